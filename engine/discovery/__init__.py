"""Auto-discovery: static signals and an LLM gap analysis feeding the backlog (``mc discover``)."""

from engine.discovery.run import DiscoveryResult, discover
from engine.discovery.signals import Finding, Signals, collect

__all__ = ["DiscoveryResult", "Finding", "Signals", "collect", "discover"]
