"""Feedback that shapes the next epoch: per-unit rewards."""
