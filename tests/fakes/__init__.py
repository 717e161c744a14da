"""Test doubles that speak the real engine protocol (never shipped with the extension)."""
