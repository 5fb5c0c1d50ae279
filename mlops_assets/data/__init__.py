"""Trips: reading TLC monthly files, normalising their schema, cleaning a period's trips."""
