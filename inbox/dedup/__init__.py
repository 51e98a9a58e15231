"""Dedup: who a message is from, which ticket it belongs to, and why."""
