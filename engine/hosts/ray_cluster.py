"""Ray cluster worker hosts (``kind = "ray"``, docs/hosts.md): mc's half.

mc is one Ray driver (``ray.init(address=...)``). Each agent process is one
:class:`~engine.hosts.ray_session.AgentSession` actor that requires one unit of the host's
agent-slot resource (``resource``, default ``mc_agent_slot``), so Ray places it on a node that
has a free slot (``SPREAD``). For each process:

1. the local worktree's ``HEAD`` is pushed to the git remote every node can reach
   (``remote``; default: the repository itself, for nodes that share its file system) under
   a ref per commit (``refs/mc/ray/base/<worktree>/<sha>``, never forced);
2. the node fetches it into its clone, runs the command line in a fresh worktree in its own
   process group with the allowlisted environment, and mc polls the output, split into lines
   by the same code as a local process's;
3. the node commits what is left, pushes it to ``refs/mc/ray/out/<worktree>/<session>`` and mc
   fetches it and fast-forwards the local worktree; both refs are then deleted.

A timeout or cancel ends the node's process group (SIGTERM, then SIGKILL). A node that dies
mid-session (the actor dies with it) ends the session with the reason (``exit_code`` None) and
records it on the placement (``session_lost``): the unit is re-dispatched, not blamed, and Ray
places the next session on a live node. The cluster itself unreachable fails ``check``: the
host is drained like any other.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio

from engine.agents.placement import session_lost
from engine.agents.process import MAX_LINE_BYTES, Line, LineSplitter, ProcessOutcome, _Tail, decode
from engine.config import redact_userinfo
from engine.host_config import RayHostConfig
from engine.hosts.remote import RemoteHost, own_worktree
from engine.lifeline import SUPERVISOR

# Ray's `uv run` hook would upload the driver's working folder (the user's checkout) to the
# cluster and build a virtualenv on every node; mc ships its node code by value instead.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

import ray  # noqa: E402  (the optional extra: mission-control[ray])
from ray.exceptions import ActorUnavailableError, RayActorError, RayError  # noqa: E402

from engine.hosts import ray_session  # noqa: E402

POLL_WAIT_S = 0.2
UNAVAILABLE_S = 30.0  # an actor unreachable this long is taken for dead
_init_lock = threading.Lock()
_remote_class: Any = None


class RayHostError(RuntimeError):
    """The cluster cannot be reached, offers no agent slot, or git failed."""


def probe(address: str, timeout: float) -> None:
    """Open a TCP connection to ``address`` (``host:port``, ``ray://host:port``; ``auto`` is
    left to Ray): ``ray.init`` and ``ray.nodes`` retry an unreachable cluster for minutes.
    Raises RayHostError."""
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise RayHostError(f"cannot reach the Ray cluster at {redact_userinfo(address)}: "
                           f"{exc.strerror or exc}") from None


def connect(address: str, namespace: str | None, timeout: float = 10.0) -> None:
    """Join the cluster at ``address`` as a driver, once per process (a second Ray host or
    a caller that already joined one reuses that connection). Raises RayHostError."""
    with _init_lock:
        if ray.is_initialized():
            return
        probe(address, timeout)
        try:
            ray.init(address=address, namespace=namespace, log_to_driver=False,
                     logging_level="warning", configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            why = (str(exc).strip().splitlines() or ["no reason given"])[0][:300]
            shown = redact_userinfo(address) if address else "(an empty address)"
            raise RayHostError(f"cannot join the Ray cluster at {shown}: "
                               f"{redact_userinfo(why)}") from None


def session_class() -> Any:
    """The actor class, its module pickled by value (nodes need not have mc installed)."""
    global _remote_class
    if _remote_class is None:
        ray.cloudpickle.register_pickle_by_value(ray_session)
        _remote_class = ray.remote(ray_session.AgentSession)
    return _remote_class


class RayHost(RemoteHost[RayHostConfig]):
    kind = "ray"

    # ------------------------------------------------------------------ health
    def check(self) -> str | None:
        """Join the cluster and count the live nodes' agent slots (blocking)."""
        try:
            connect(self.config.address, self.config.namespace, self.config.connect_timeout)
            probe(ray.get_runtime_context().gcs_address, self.config.connect_timeout)
            alive = [n for n in ray.nodes() if n.get("Alive")]
        except RayHostError as exc:
            return str(exc)
        except (RayError, ConnectionError, RuntimeError) as exc:
            return redact_userinfo(
                f"the Ray cluster at {self.config.address} does not answer: {exc}")[:400]
        slots = sum(n.get("Resources", {}).get(self.config.resource, 0) for n in alive)
        if slots < 1:
            return (f"no live node of the Ray cluster offers the resource "
                    f"{self.config.resource!r} ({len(alive)} live nodes)")
        verify = self.config.verify_slot_resource
        if self.config.verify and sum(n.get("Resources", {}).get(verify, 0) for n in alive) < 1:
            return (f"verify = true, but no live node of the Ray cluster offers the resource "
                    f"{verify!r} for verifications ({len(alive)} live nodes)")
        if self.config.remote:
            done = subprocess.run(["git", "ls-remote", "-q", self.config.remote, "HEAD"],
                                  capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                  timeout=60, check=False)
            if done.returncode != 0:
                shown = redact_userinfo(self.config.remote)
                why = done.stderr.strip()[-300:].replace(self.config.remote, shown)
                return f"git remote {shown} cannot be reached: {why}"
        return None

    # ------------------------------------------------------------------ running
    async def run_streaming(
        self, argv: list[str], *, cwd: Path, env: Mapping[str, str],
        on_line: Callable[[Line], None], stdin: bytes | None = None,
        timeout: float | None = None, kill_grace: float = 5.0,
        max_line_bytes: int = MAX_LINE_BYTES, result_seen: Callable[[], bool] | None = None,
        result_grace: float = 5.0,
    ) -> ProcessOutcome:
        """Run ``argv`` on a node of the cluster in a copy of the local worktree ``cwd``; see
        the module docstring. Raises ``OSError`` when the cluster or the remote cannot be
        reached, or ``argv[0]`` is not installed on the node."""
        started = time.monotonic()
        cwd = own_worktree(cwd)  # the work is fast-forwarded back into cwd
        try:
            await anyio.to_thread.run_sync(connect, self.config.address, self.config.namespace,
                                           self.config.connect_timeout)
        except RayHostError as exc:
            raise OSError(str(exc)) from None
        remote = self.config.remote or (await _git(cwd, "rev-parse", "--path-format=absolute",
                                                   "--git-common-dir")).strip()
        head = (await _git(cwd, "rev-parse", "HEAD")).strip()
        session = uuid.uuid4().hex[:16]
        base_ref = f"refs/mc/ray/base/{cwd.name}/{head}"
        out_ref = f"refs/mc/ray/out/{cwd.name}/{session}"
        try:
            await _git(cwd, "push", "-q", remote, f"{head}:{base_ref}")
        except RayHostError as exc:
            raise OSError(f"pushing the unit's base to {remote} failed: {exc}") from None
        actor = session_class().options(
            num_cpus=0, resources={self.config.resource: 1}, max_restarts=0,
            max_task_retries=0, scheduling_strategy="SPREAD").remote()
        outcome = ProcessOutcome(exit_code=None, pid=0)
        where, placed = "a node", False
        try:
            try:
                with anyio.fail_after(self.config.start_timeout):
                    info = await actor.prepare.remote(remote, base_ref, head,
                                                      self.config.work_dir, session)
            except TimeoutError:
                # e.g. a node died and the cluster has fewer slots than mc sends sessions:
                # the unit waits its turn again, uncounted (no slot at all fails check())
                waited = (f"no node of Ray host {self.name} had a free "
                          f"{self.config.resource!r} for {self.config.start_timeout:g} s")
                session_lost(waited)
                raise OSError(waited) from None
            placed = True
            where = f"node {info['node_id'][:12]} ({info['hostname']})"
            with open(SUPERVISOR) as handle:
                supervisor = handle.read()
            outcome.pid = await actor.start.remote(list(argv), dict(env), stdin, supervisor,
                                                   kill_grace)
            await self._follow(actor, on_line, timeout, kill_grace, max_line_bytes,
                               result_seen, result_grace, outcome)
            if outcome.exit_code is not None or outcome.timed_out or outcome.ended_after_result:
                await actor.finish.remote(remote, out_ref, self.name)
                try:
                    await _git(cwd, "fetch", "-q", remote, out_ref)
                    await _git(cwd, "merge", "-q", "--ff-only", "FETCH_HEAD")
                except RayHostError as exc:
                    raise OSError(f"fetching the work back from {remote} failed: {exc}") from None
        except RayActorError as exc:  # the node (or its worker process) died
            reason = _why_dead(exc)
            lost = f"ray {where} lost during the session ({reason})"
            outcome.stderr_tail = (outcome.stderr_tail + "\n" + lost).strip()
            outcome.exit_code = None
            session_lost(lost)
        except RayError as exc:  # e.g. git failed on the node: RayTaskError(SessionError)
            if isinstance(exc, FileNotFoundError):  # the CLI is not installed on the node
                raise FileNotFoundError(errno.ENOENT, f"{argv[0]} is not installed on ray "
                                        f"{where}", argv[0]) from None
            raise OSError(f"ray host {self.name} on {where}: {_first_line(exc)}") from None
        except anyio.get_cancelled_exc_class():
            outcome.cancelled = True
            with anyio.CancelScope(shield=True), anyio.move_on_after(kill_grace + 10):
                try:
                    if placed:
                        outcome.killed = await actor.stop.remote(kill_grace)
                except RayError:
                    pass
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await self._release(actor, placed, cwd, remote, base_ref, out_ref)
        outcome.duration_s = time.monotonic() - started
        return outcome

    async def _follow(self, actor: Any, on_line: Callable[[Line], None], timeout: float | None,
                      kill_grace: float, max_line_bytes: int,
                      result_seen: Callable[[], bool] | None, result_grace: float,
                      outcome: ProcessOutcome) -> None:
        """Poll the node's output into ``on_line`` until the process ends or is ended."""
        splitters = {"stdout": LineSplitter(max_line_bytes), "stderr": LineSplitter(max_line_bytes)}
        tail = _Tail()
        if outcome.stderr_tail:
            tail.add(outcome.stderr_tail)

        def deliver(name: str, items: list[tuple[bytes, bool, int]]) -> None:
            for raw, truncated, size in items:
                text = decode(raw)
                outcome.lines += 1
                outcome.truncated_lines += int(truncated)
                if name == "stderr":
                    tail.add(text)
                on_line(Line(text, name, truncated, size))

        deadline = None if timeout is None else time.monotonic() + timeout
        grace_ends: float | None = None
        try:
            while True:
                chunks, ended, code = await poll_actor(actor)
                for name, chunk in chunks:
                    deliver(name, splitters[name].feed(chunk))
                if ended:
                    outcome.exit_code = code
                    break
                now = time.monotonic()
                if grace_ends is None and result_seen is not None and result_seen():
                    grace_ends = now + result_grace
                if grace_ends is not None and now >= grace_ends:
                    outcome.ended_after_result = True
                elif deadline is not None and now >= deadline:
                    outcome.timed_out = True
                if outcome.ended_after_result or outcome.timed_out:
                    outcome.killed = await actor.stop.remote(kill_grace)
                    chunks, _, _ = await actor.poll.remote(0)
                    for name, chunk in chunks:
                        deliver(name, splitters[name].feed(chunk))
                    break
        finally:
            for name, splitter in splitters.items():
                deliver(name, splitter.flush())
            outcome.stderr_tail = tail.text()

    async def _release(self, actor: Any, placed: bool, cwd: Path, remote: str, base_ref: str,
                       out_ref: str) -> None:
        """Remove the node's worktree, end the actor, delete the session's refs (best effort)."""
        with anyio.move_on_after(30):
            try:
                if placed:  # an actor still waiting for a slot has nothing to clean
                    await actor.cleanup.remote()
            except RayError:
                pass
        try:
            ray.kill(actor)
        except (RayError, ValueError):
            pass
        for ref in (base_ref, out_ref):
            try:
                await _git(cwd, "push", "-q", remote, f":{ref}")  # deleting is never a force
            except RayHostError:
                pass  # out_ref is missing when the session did not finish


def _why_dead(exc: BaseException) -> str:
    """Ray's reason an actor died, shortest form: "The actor died because its node has died;
    the actor's node was terminated unexpectedly: health check failed ..."."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    why = [ln.split(". Node Id")[0].rstrip(".") for ln in lines
           if ln.startswith(("The actor died because", "The actor is dead because",
                             "the actor's node", "The actor is unavailable"))]
    return "; ".join(why)[:300] if why else _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    interesting = [ln for ln in lines if "died" in ln or "Error" in ln] or lines or [repr(exc)]
    return interesting[-1][:300] if "Traceback" in text else interesting[0][:300]


async def _git(cwd: Path, *args: str) -> str:
    done = await anyio.run_process(["git", "-C", str(cwd), *args], check=False,
                                   stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RayHostError((done.stderr or b"").decode(errors="replace").strip()[-500:]
                           or f"git {args[0]} exited with {done.returncode}")
    return done.stdout.decode(errors="replace")


__all__ = ["RayHost", "RayHostError", "connect", "ray", "session_class"]


async def poll_actor(actor: Any, wait: float = POLL_WAIT_S) -> tuple[list[Any], bool, int | None]:
    """One ``poll`` of a session actor: ``(chunks, ended, exit code)``. An unavailable actor
    may be a blip: the call is retried every 0.5 s, and ``ActorUnavailableError`` re-raised
    only once it has lasted ``UNAVAILABLE_S`` seconds (then the node is taken for lost)."""
    unavailable_since: float | None = None
    while True:
        try:
            return await actor.poll.remote(wait)
        except ActorUnavailableError:
            now = time.monotonic()
            unavailable_since = unavailable_since or now
            if now - unavailable_since >= UNAVAILABLE_S:
                raise
            await anyio.sleep(0.5)
