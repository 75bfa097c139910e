"""Resilience: circuit breaking and graceful degradation of dispatch."""
