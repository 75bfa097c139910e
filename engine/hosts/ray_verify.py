"""Merge-queue verifications on a Ray node (``[[hosts]] kind = "ray"``, ``verify = true``;
docs/hosts.md).

:class:`RayVerifier` is the verifier's ``remote`` runner
(:class:`~engine.gitops.verify.RemoteVerify`), built by ``engine/wiring.py``. Per run:

1. the candidate commit is pushed to the git remote every node reaches under a new ref
   (``refs/mc/ray/verify/<sha>-<run>``, never forced, deleted afterwards);
2. an :class:`~engine.hosts.ray_session.AgentSession` actor, requiring one unit of the host's
   ``verify_resource`` (default: its ``resource``), checks it out in a fresh worktree of the
   node's clone and runs ``/bin/sh -c <command>`` (stderr into stdout) under mc's supervisor in
   its own process group, with the agents' allowlisted environment (``build_env``: never
   ``MC_*`` or mc's tokens) plus ``PYTEST_ADDOPTS`` / ``MC_JUNIT_XML`` pointing at a folder
   beside that worktree (``testresults.results_env``);
3. mc polls the output into the same bounded buffer as a local run, ends the node's group on
   timeout or cancel (SIGTERM, then SIGKILL), fetches the JUnit files back and builds the
   result with :func:`~engine.gitops.verify.remote_result`: it is recorded and judged against
   the baseline exactly like a local run, with ``host`` saying where it ran.

Anything that is not the command's own doing (the cluster unreachable, no node with a free
slot within ``start_timeout``, git failing, the node lost mid-run) is an ``error`` result:
the queue blames nobody and queues the batch again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from engine.agents.process import build_env
from engine.gitops.testresults import JUNIT_FILE, PYTEST_FILE, results_env
from engine.gitops.verify import (
    ORPHAN_GRACE_S,
    BoundedOutput,
    VerificationResult,
    remote_result,
)
from engine.host_config import RayHostConfig
from engine.hosts.ray_cluster import (
    RayHostError,
    _first_line,
    _git,
    _why_dead,
    connect,
    poll_actor,
    ray,
    session_class,
)
from engine.lifeline import SUPERVISOR

RayActorError = ray.exceptions.RayActorError
RayError = ray.exceptions.RayError

MAX_REPORT_BYTES = 16 << 20  # a JUnit file larger than this is not fetched back


class RayVerifier:
    """Runs verification commands on the nodes of one Ray host (see the module docstring)."""

    def __init__(self, name: str, config: RayHostConfig, repo_path: Path, *,
                 passthrough: Sequence[str] = (), deny: Sequence[str] = ()) -> None:
        self.name = name
        self.config = config
        self.repo_path = Path(repo_path)
        self.passthrough = list(passthrough)
        self.deny = list(deny)

    def environment(self) -> dict[str, str]:
        """The agents' allowlist (``engine.agents.process.build_env``) without the agent
        backends' variables (a test suite needs no model API key): ``MC_*``, the names in
        ``deny`` (mc's tokens) and the model keys never leave mc's machine."""
        return build_env(passthrough=self.passthrough, deny=self.deny, backend=False)

    async def __call__(self, commit: str, command: str, timeout: float,
                       max_output_bytes: int) -> VerificationResult:
        started = time.monotonic()
        where = f"ray host {self.name}"

        def error(why: str) -> VerificationResult:
            return VerificationResult("error", None, f"verification could not run on {where}: "
                                      f"{why}", time.monotonic() - started, host=where)

        try:
            await anyio.to_thread.run_sync(connect, self.config.address, self.config.namespace,
                                           self.config.connect_timeout)
            remote = self.config.remote or (await _git(
                self.repo_path, "rev-parse", "--path-format=absolute",
                "--git-common-dir")).strip()
            run = uuid.uuid4().hex[:16]
            ref = f"refs/mc/ray/verify/{commit}-{run}"
            await _git(self.repo_path, "push", "-q", remote, f"{commit}:{ref}")
        except RayHostError as exc:
            return error(str(exc))
        actor = session_class().options(
            num_cpus=0, resources={self.config.verify_slot_resource: 1}, max_restarts=0,
            max_task_retries=0, scheduling_strategy="SPREAD").remote()
        placed = False
        try:
            try:
                with anyio.fail_after(self.config.start_timeout):
                    info = await actor.prepare.remote(remote, ref, commit, self.config.work_dir,
                                                      f"verify-{run}")
            except TimeoutError:
                return error(f"no node had a free {self.config.verify_slot_resource!r} for "
                             f"{self.config.start_timeout:g} s")
            placed = True
            where = f"ray host {self.name}, node {info['node_id'][:12]} ({info['hostname']})"
            scratch = await actor.scratch_dir.remote()
            env = results_env(self.environment(), Path(scratch))
            with open(SUPERVISOR) as handle:
                supervisor = handle.read()
            await actor.start.remote(["/bin/sh", "-c", "exec 2>&1\n" + command], env, None,
                                     supervisor, ORPHAN_GRACE_S)
            sink = BoundedOutput(max_output_bytes)
            code, timed_out = await _follow(actor, sink, timeout)
            reports = {} if timed_out else await actor.read_files.remote(
                [PYTEST_FILE, JUNIT_FILE], MAX_REPORT_BYTES)
            return remote_result(sink.text(), code, time.monotonic() - started, timed_out,
                                 timeout, reports, where)
        except RayActorError as exc:  # the node (or its worker process) died
            return error(f"the node was lost during the verification ({_why_dead(exc)})")
        except RayError as exc:  # e.g. git failed on the node: RayTaskError(SessionError)
            return error(_first_line(exc))
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True), anyio.move_on_after(ORPHAN_GRACE_S + 10):
                try:
                    if placed:
                        await actor.stop.remote(ORPHAN_GRACE_S)
                except RayError:
                    pass
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await _release(actor, placed, self.repo_path, remote, ref)


async def _follow(actor: Any, sink: BoundedOutput, timeout: float) -> tuple[int | None, bool]:
    """Poll the node's output into ``sink`` until the command ends (its exit code) or the
    timeout (its group ended: ``(None, True)``)."""
    deadline = time.monotonic() + timeout
    while True:
        chunks, ended, code = await poll_actor(actor)
        for _name, chunk in chunks:
            sink.feed(chunk)
        if ended:
            return code, False
        if time.monotonic() >= deadline:
            await actor.stop.remote(ORPHAN_GRACE_S)
            chunks, _, _ = await actor.poll.remote(0)
            for _name, chunk in chunks:
                sink.feed(chunk)
            return None, True


async def _release(actor: Any, placed: bool, repo_path: Path, remote: str, ref: str) -> None:
    """Remove the node's worktree and reports, end the actor, delete the pushed ref (best
    effort)."""
    with anyio.move_on_after(30):
        try:
            if placed:
                await actor.cleanup.remote()
        except RayError:
            pass
    try:
        ray.kill(actor)
    except (RayError, ValueError):
        pass
    try:
        await _git(repo_path, "push", "-q", remote, f":{ref}")  # deleting is never a force
    except RayHostError:
        pass


__all__ = ["RayVerifier"]
