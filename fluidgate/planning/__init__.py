"""Capacity planning from real traffic: request traces → class tables, sweeps over policy
parameters and capacity searches over GPU counts, and running their independent points."""
