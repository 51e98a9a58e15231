"""Ingest: one transaction per page, the cursor last."""
