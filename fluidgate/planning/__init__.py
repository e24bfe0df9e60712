"""Capacity planning from real traffic: request traces → class tables (and, next, sweeps
and capacity searches over policies)."""
