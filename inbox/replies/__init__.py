"""Replies: windows, routes, the outbox and its ledger, settling in-doubt sends."""
