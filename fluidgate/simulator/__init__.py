"""Discrete-event validation of controllers (DESIGN.md §6); not built yet."""
