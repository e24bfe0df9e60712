"""Calibration: measure iteration times, import published or logged ones, fit the LP's constants.

Heavy libraries (torch, matplotlib, scipy) are imported inside the functions that need them.
"""
