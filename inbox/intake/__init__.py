"""Webhook intake: verify, parse, store through the same ingest as a poll."""
