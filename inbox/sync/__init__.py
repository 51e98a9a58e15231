"""Sync: one account's pass, many accounts at once, the scheduler."""
