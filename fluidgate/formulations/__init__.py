"""The fluid LP of DESIGN.md §2 and the SLO constraints of §3, built with Pyomo."""
