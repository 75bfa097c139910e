"""Worker hosts: where agent sessions run (``[[hosts]]``, docs/hosts.md)."""

from __future__ import annotations

from engine.hosts.base import (
    Host,
    HostFleet,
    HostState,
    LocalHost,
    SandboxHost,
    current_host,
    running_on,
)
from engine.hosts.health import check_hosts

__all__ = [
    "Host", "HostFleet", "HostState", "LocalHost", "SandboxHost", "check_hosts",
    "current_host", "running_on",
]
