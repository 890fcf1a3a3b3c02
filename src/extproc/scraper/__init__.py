"""Metrics scraping: one loop per endpoint writes immutable snapshots the scheduler only reads."""
