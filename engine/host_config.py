"""``[[hosts]]``: where agent sessions run (docs/hosts.md).

Each entry is one host with ``slots`` agent slots. ``kind = "local"`` runs agents as plain
processes (today's behaviour), ``"sandbox"`` runs each one inside bubblewrap, ``"ssh"`` on another
machine over SSH, ``"ray"`` on the nodes of a Ray cluster (the extra ``mission-control[ray]``).
The kind ``"container"`` is reserved: it is not available in this version, and a config naming
it is an error (key path ``hosts.<n>.kind``), never silently ignored.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import ConfigDict, Discriminator, Field, Tag, ValidationInfo, field_validator

from engine.config_rules import GitRemote, StrictBools

NOT_BUILT = {
    "container": "OCI container hosts are not available in this version: no container runtime "
                 "can run on the developers' machine (podman and runc were tried), so it would "
                 "ship untested (docs/hosts.md, 'Not built')",
}


class _HostBase(StrictBools):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("", description="Shown in the TUI and the dashboard; default: kind + index.")
    slots: int = Field(1, ge=1, le=64, description="Agent sessions this host runs at once.")
    recheck_seconds: float = Field(
        60.0, gt=0, description="A drained host's health is checked again after this long.")


class LocalHostConfig(_HostBase):
    kind: Literal["local"] = "local"


class SandboxHostConfig(_HostBase):
    kind: Literal["sandbox"] = "sandbox"
    bwrap: str = Field("bwrap", description="The bubblewrap executable.")
    network: Literal["none", "host"] = Field(
        "none", description="none: a private network namespace (no network at all, "
        "--unshare-net); host: the host's network (needed by CLIs that call an API).")
    allow: list[str] = Field(
        default_factory=list,
        description="With network = none: loopback endpoints (\"127.0.0.1:8080\") the agent may "
        "still reach, relayed into the sandbox (a model server, or a proxy that filters the rest).")
    home_keep: list[str] = Field(
        default_factory=lambda: [".claude", ".claude.json", ".codex", ".gemini", ".aider.conf.yml"],
        description="Entries of the home folder the agent keeps (read-write: its own config); "
        "the rest of the home folder is hidden.")
    read_only: list[str] = Field(
        default_factory=list,
        description="Extra paths made visible read-only (e.g. a toolchain under the home folder).")
    permission_mode: str | None = Field(
        "bypassPermissions",
        description="The agent CLI's permission mode inside this sandbox (None: agent."
        "permission_mode). Full bypass is allowed only inside a sandbox.")

    @field_validator("allow")
    @classmethod
    def _loopback_only(cls, values: list[str]) -> list[str]:
        return _check_allow(values)


def _check_allow(values: list[str]) -> list[str]:
    return [_endpoint_ok(v) for v in values]


class SshHostConfig(_HostBase):
    kind: Literal["ssh"] = "ssh"
    address: str = Field(..., description="The host's name or IP address.")
    port: int = Field(22, ge=1, le=65535, description="The SSH port.")
    user: str | None = Field(None, description="The login (default: the current user).")
    identity_file: Path | None = Field(
        None, description="Private key file (default: the SSH agent / ~/.ssh keys). Never in "
        "the store or the logs.")
    known_hosts: Path | None = Field(
        None, description="known_hosts file the host key must be in (default: ~/.ssh/known_hosts).")
    trust_unknown_host_key: bool = Field(
        False, description="Accept a host key that known_hosts does not list (never by default).")
    remote_dir: str = Field(
        "mc-hosts", description="Where mc keeps its clone on the host (relative: under the "
        "remote home folder).")
    connect_timeout: float = Field(10.0, gt=0, description="Seconds to connect and log in.")


class RayHostConfig(_HostBase):
    kind: Literal["ray"] = "ray"
    address: str = Field(
        "auto", description="The cluster to join as a driver (ray.init's address: \"auto\", "
        "\"<head>:6379\"). Ray's own credentials (RAY_AUTH_TOKEN, TLS files) come from the "
        "environment, never from this file or the store.")
    namespace: str | None = Field(None, description="The Ray namespace mc's actors live in.")
    remote: GitRemote = Field(
        "", description="A git remote (URL or path) that mc and every node can reach: mc "
        "pushes each unit's base there, the node pushes the unit's work back. Empty: the "
        "repository itself (nodes that share its file system). A URL never holds a "
        "credential: git gets it from a credential helper or GIT_ASKPASS.")
    resource: str = Field(
        "mc_agent_slot", description="The custom resource each agent session requires one of "
        "(start nodes with --resources='{\"mc_agent_slot\": N}').")
    work_dir: str = Field(
        "mc-ray", description="Where each node keeps its clone and the sessions' worktrees "
        "(relative: under the node's home folder).")
    connect_timeout: float = Field(
        10.0, gt=0, description="Seconds to reach the cluster's address (the health check).")
    start_timeout: float = Field(
        300.0, gt=0, description="Seconds a session may wait for a node with a free agent "
        "slot before it fails (the host is then checked).")
    verify: bool = Field(
        False, description="Run the merge queue's verifications on the cluster too: each one "
        "is a Ray actor on a node, the candidate commit pushed to remote, the command run "
        "with the agents' allowlisted environment (never mc's own). A node lost mid-run is "
        "an error that blames nobody (the batch is queued again).")
    verify_resource: str = Field(
        "", description="With verify: the custom resource each verification requires one of "
        "(start nodes with --resources='{\"mc_verify_slot\": N}'). Empty: resource "
        "(verifications then share the agent slots).")

    @field_validator("kind")
    @classmethod
    def _ray_installed(cls, value: str) -> str:
        if importlib.util.find_spec("ray") is None:
            raise ValueError("Ray is not installed: install the extra, "
                             "pip install 'mission-control[ray]' (or uv sync --extra ray)")
        return value

    @field_validator("verify_resource")
    @classmethod
    def _verify_resource_needs_verify(cls, value: str, info: ValidationInfo) -> str:
        if value and not info.data.get("verify"):
            raise ValueError("set but verify is false: set verify = true to run the merge "
                             "queue's verifications on the cluster")
        return value

    @property
    def verify_slot_resource(self) -> str:
        """The resource each verification actor requires one of."""
        return self.verify_resource or self.resource


def _endpoint_ok(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or host not in ("127.0.0.1", "localhost", "::1", "[::1]") or not port.isdigit():
        raise ValueError(f"{value!r}: allow takes loopback endpoints like 127.0.0.1:8080")
    return value


class ReservedHostConfig(_HostBase):
    """A kind that is not built: validation fails with the reason."""

    model_config = ConfigDict(extra="allow")
    kind: Literal["container"]

    @field_validator("kind")
    @classmethod
    def _not_built(cls, value: str) -> str:
        raise ValueError(NOT_BUILT[value])


_KINDS: dict[str, type[_HostBase]] = {
    "local": LocalHostConfig, "sandbox": SandboxHostConfig, "ssh": SshHostConfig,
    "ray": RayHostConfig, "container": ReservedHostConfig,
}
HOST_KINDS: tuple[str, ...] = tuple(k for k in _KINDS if k not in NOT_BUILT)
"""The ``[[hosts]] kind`` values this version runs (``container`` is refused with its reason)."""


def _kind_of(value: Any) -> Any:
    return value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)


# A callable discriminator so an unknown kind's error lists only the kinds that work.
HostConfig = Annotated[
    Union[tuple(Annotated[cls, Tag(kind)] for kind, cls in _KINDS.items())],  # noqa: UP007
    Discriminator(_kind_of, custom_error_type="host_kind",
                  custom_error_message="kind must be one of: " + ", ".join(HOST_KINDS)),
]


def host_names(hosts: list[Any]) -> list[str]:
    """Each host's name: its ``name`` or ``<kind><index>``; duplicates are an error."""
    if sum(h.kind == "ray" for h in hosts) > 1:
        raise ValueError("at most one ray host: mc joins one Ray cluster (its slots are all "
                         "that cluster's)")
    names = [h.name or f"{h.kind}{i}" for i, h in enumerate(hosts)]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"host names must be unique: {', '.join(dupes)}")
    return names
