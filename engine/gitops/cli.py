"""Running the git CLI (push, fetch, update-ref) with the user's environment.

The CLI is used where the user's own setup matters (credential helpers, ssh
config, hooks) or where git offers an atomic primitive pygit2 lacks.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import anyio

REDIRECTING_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY")


def git_env() -> dict[str, str]:
    """The user's environment minus variables that would redirect git; never prompts."""
    env = {k: v for k, v in os.environ.items() if k not in REDIRECTING_VARS}
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


@dataclass
class GitRun:
    returncode: int
    output: str


async def run_git(args: list[str], cwd: Path, timeout: float = 120.0) -> GitRun:
    """Run ``git ARGS`` in ``cwd`` without blocking the loop; stdout and stderr combined."""

    def _run() -> GitRun:
        try:
            proc = subprocess.run(
                ["git", *args], cwd=cwd, env=git_env(), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            out = (exc.output or b"").decode("utf-8", "replace")
            return GitRun(124, f"{out}\ngit {args[0]} timed out after {timeout:.0f}s")
        except OSError as exc:
            return GitRun(127, f"cannot run git: {exc}")
        return GitRun(proc.returncode, proc.stdout.decode("utf-8", "replace"))

    return await anyio.to_thread.run_sync(_run)
