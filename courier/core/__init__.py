"""Courier's domain: records and the pure decisions taken on them (no I/O here)."""
