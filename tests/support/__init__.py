"""Helpers shared by every tier of tests: builders, servers, waits (no tests here)."""
