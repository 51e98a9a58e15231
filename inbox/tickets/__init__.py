"""Tickets: their lifecycle, triage, the queue, detail, agents' operations, people."""
