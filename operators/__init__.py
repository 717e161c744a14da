"""Operators: thin. Each reads its properties into plain values and calls ``core``/``scene`` functions."""
