"""Operators: thin. Each reads its properties into plain values and calls ``session``/``scene`` functions."""
