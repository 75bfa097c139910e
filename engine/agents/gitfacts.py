"""Small git facts about an agent's worktree (git CLI, run through anyio).

Used after a session to save uncommitted work and to judge the outcome when the
worker did not report one: commits since the base, files changed, head commit.
"""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from engine.clock import git_date_env

AGENT_NAME = "mc-agent"
AGENT_EMAIL = "mc-agent@mission-control.invalid"
INCLUDED_RECORD = "mc-included"  # engine.gitops.includes.RECORD
GIT_TIMEOUT = 300.0  # seconds one git command may run (a commit of a very large tree)
GIT_THREADS = 16  # git commands run at once (worker threads of their own, per event loop)


class GitError(RuntimeError):
    pass


def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_AUTHOR_NAME=AGENT_NAME, GIT_AUTHOR_EMAIL=AGENT_EMAIL,
        GIT_COMMITTER_NAME=AGENT_NAME, GIT_COMMITTER_EMAIL=AGENT_EMAIL,
        GIT_TERMINAL_PROMPT="0",
    )
    env.update(git_date_env())  # a test clock dates the commits (engine/clock.py)
    return env


_LIMITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
    weakref.WeakKeyDictionary())


def _limiter() -> anyio.CapacityLimiter:
    """This event loop's threads for git commands: their own ``GIT_THREADS``, so that many
    agents' ``git add -A`` never hold up the merge queue's and the pool's work on anyio's
    default threads (40 in all), nor the other way round."""
    loop = asyncio.get_running_loop()
    limiter = _LIMITERS.get(loop)
    if limiter is None:
        limiter = _LIMITERS[loop] = anyio.CapacityLimiter(GIT_THREADS)
    return limiter


async def git(workdir: Path, *args: str, check: bool = True) -> str:
    """Run ``git -C workdir args...``; returns stdout (stripped). ``GitError`` when it fails
    (with ``check``) or runs past ``GIT_TIMEOUT`` seconds (it is killed).

    Run by ``subprocess.run`` on a worker thread, not as an asyncio subprocess: these are
    short commands, several per agent session, and the asyncio transport (pipes, protocol,
    a child-watcher thread per process) cost about twice the CPU of the spawn itself, on the
    event loop (``docs/scaling.md``). The thread is not abandoned when the caller is
    cancelled (killing git half-way can leave an ``index.lock``): the command is short, and
    bounded by the timeout. At most ``GIT_THREADS`` run at once (:func:`_limiter`)."""
    argv = ["git", "-c", "commit.gpgsign=false", "-C", str(workdir), *args]
    try:
        result = await anyio.to_thread.run_sync(functools.partial(
            subprocess.run, argv, capture_output=True, env=_git_env(),
            stdin=subprocess.DEVNULL, timeout=GIT_TIMEOUT, check=False), limiter=_limiter())
    except subprocess.TimeoutExpired:
        raise GitError(f"git {' '.join(args)} ran for over {GIT_TIMEOUT} s and was killed") from None
    out = result.stdout.decode("utf-8", errors="replace")
    if check and result.returncode != 0:
        err = result.stderr.decode("utf-8", errors="replace").strip()
        raise GitError(f"git {' '.join(args)} failed ({result.returncode}): {err or out}")
    return out.strip()


async def is_dirty(workdir: Path) -> bool:
    return bool(await git(workdir, "status", "--porcelain", "--untracked-files=all"))


async def commit_all(workdir: Path, message: str) -> str | None:
    """``git add -A`` and commit as mc-agent; returns the new sha, or None if nothing changed."""
    if not await is_dirty(workdir):
        return None
    await git(workdir, "add", "-A")
    await keep_missing_submodules(workdir)
    await leave_out_included(workdir)
    if not await git(workdir, "diff", "--cached", "--name-only", "--no-renames"):
        return None
    await git(workdir, "commit", "-q", "--no-verify", "-m", message)
    return await git(workdir, "rev-parse", "HEAD")


async def keep_missing_submodules(workdir: Path) -> None:
    """Unstage the deletion of a submodule whose folder is missing or not checked out:
    ``git add -A`` records it as deleted, but that is not what an agent's leftovers mean."""
    deleted = await git(workdir, "diff", "--cached", "--name-only", "--no-renames",
                        "--diff-filter=D", "-z")
    paths = [p for p in deleted.split("\0") if p]
    if not paths:
        return
    listing = await git(workdir, "ls-tree", "-z", "HEAD", "--", *paths)
    keep = []
    for line in listing.split("\0"):
        meta, _, path = line.partition("\t")
        if meta.startswith("160000 ") and not os.path.lexists(workdir / path / ".git"):
            keep.append(path)
    if keep:
        await git(workdir, "reset", "-q", "HEAD", "--", *keep)


async def leave_out_included(workdir: Path) -> None:
    """Unstage the files mc copied in from the user's checkout (worktree includes, listed
    in the worktree's git dir): never committed, even when an agent un-ignored them."""
    gitdir = Path(await git(workdir, "rev-parse", "--absolute-git-dir"))
    try:
        paths = [p for p in (gitdir / INCLUDED_RECORD).read_text().splitlines() if p]
    except OSError:
        return
    if paths:
        await git(workdir, "reset", "-q", "HEAD", "--", *paths)


@dataclass
class GitFacts:
    head_commit: str
    commits: int
    files_changed: list[str] = field(default_factory=list)


async def facts_since(workdir: Path, base_commit: str) -> GitFacts:
    """Commits and changed files between ``base_commit`` and HEAD."""
    head = await git(workdir, "rev-parse", "HEAD")
    count = int(await git(workdir, "rev-list", "--count", f"{base_commit}..HEAD") or 0)
    names = await git(workdir, "diff", "--name-only", base_commit, "HEAD")
    return GitFacts(head, count, [n for n in names.splitlines() if n])
