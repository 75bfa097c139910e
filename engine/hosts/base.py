"""The ``Host`` protocol and the fleet of hosts one mission dispatches to (docs/hosts.md).

A host runs agent sessions: it turns an agent's command line into the one that runs it there
(``wrap``) and says whether it can run anything at all (``check``). The engine, the merge
queue and the store stay on the machine that runs mc. Slot numbers ``0..total-1`` are laid
out host after host in config order; slots past the hosts' (fixup candidates) run on the
first healthy host.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.agents.placement import Host, current_host, running_on
from engine.host_config import (
    LocalHostConfig,
    RayHostConfig,
    SandboxHostConfig,
    SshHostConfig,
    host_names,
)
from engine.hosts.sandbox import bwrap_argv, probe


@dataclass
class LocalHost:
    name: str
    slots: int
    kind: str = "local"
    permission_mode: str | None = None  # None: agent.permission_mode

    def wrap(self, argv: list[str], *, cwd: Path, env: Mapping[str, str]) -> list[str]:
        return list(argv)

    def check(self) -> str | None:
        return None


@dataclass
class SandboxHost:
    name: str
    slots: int
    config: SandboxHostConfig
    kind: str = "sandbox"

    @property
    def permission_mode(self) -> str | None:
        return self.config.permission_mode

    def wrap(self, argv: list[str], *, cwd: Path, env: Mapping[str, str]) -> list[str]:
        return bwrap_argv(self.config, argv, cwd=Path(cwd), env=env)

    def check(self) -> str | None:
        return probe(self.config)


@dataclass
class HostState:
    host: Host
    first_slot: int
    drained_reason: str | None = None
    drained_at: float = 0.0
    recheck_seconds: float = 60.0


@dataclass
class HostFleet:
    """The mission's hosts, their slots and their breakers (a drained host's is open)."""

    states: list[HostState] = field(default_factory=list)
    clock: object = time.monotonic

    @classmethod
    def from_config(
        cls, hosts: list[LocalHostConfig | SandboxHostConfig | SshHostConfig | RayHostConfig]
    ) -> HostFleet:
        names = host_names(hosts)
        states, first = [], 0
        for cfg, name in zip(hosts, names, strict=True):
            host: Host
            if isinstance(cfg, SandboxHostConfig):
                host = SandboxHost(name, cfg.slots, cfg)
            elif isinstance(cfg, SshHostConfig):
                from engine.hosts.ssh import SshHost  # asyncssh only when an SSH host is used

                host = SshHost(name, cfg.slots, cfg)
            elif isinstance(cfg, RayHostConfig):
                from engine.hosts.ray_cluster import RayHost  # ray: the optional extra

                host = RayHost(name, cfg.slots, cfg)
            else:
                host = LocalHost(name, cfg.slots)
            states.append(HostState(host, first, recheck_seconds=cfg.recheck_seconds))
            first += cfg.slots
        return cls(states)

    @property
    def total_slots(self) -> int:
        return sum(s.host.slots for s in self.states)

    def state_of(self, slot: int) -> HostState:
        for state in self.states:
            if state.first_slot <= slot < state.first_slot + state.host.slots:
                return state
        healthy = [s for s in self.states if s.drained_reason is None]
        return (healthy or self.states)[0]

    def host_of(self, slot: int) -> Host:
        return self.state_of(slot).host

    def usable(self, slot: int) -> bool:
        """Whether dispatch may use ``slot``: its host is not drained."""
        return self.state_of(slot).drained_reason is None

    def drain(self, host_name: str, reason: str) -> bool:
        """Open ``host_name``'s breaker; True when it was healthy until now."""
        for state in self.states:
            if state.host.name == host_name and state.drained_reason is None:
                state.drained_reason, state.drained_at = reason, self.clock()  # type: ignore[operator]
                return True
        return False

    def due_rechecks(self) -> list[HostState]:
        """Drained hosts whose breaker is half-open (their recheck time has come)."""
        now = self.clock()  # type: ignore[operator]
        return [s for s in self.states
                if s.drained_reason is not None and now - s.drained_at >= s.recheck_seconds]

    def healthy(self) -> list[HostState]:
        return [s for s in self.states if s.drained_reason is None]


__all__ = ["Host", "HostFleet", "HostState", "LocalHost", "SandboxHost", "current_host",
           "running_on"]
