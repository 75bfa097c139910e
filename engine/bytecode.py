"""Keep Python's bytecode caches out of the worktrees mc hands to agents and verifications.

An agent that runs the tests (or mc's own verification) makes CPython write ``__pycache__/``
folders beside every imported module. In a repository that does not ignore them, the next
``git add -A`` (the agent's own, or mc's commit of an agent's leftovers) records ``.pyc``
files: two units then conflict on binary files and ``mc/green`` collects bytecode. Setting
``PYTHONPYCACHEPREFIX`` (Python 3.8+, https://docs.python.org/3/using/cmdline.html#envvar-PYTHONPYCACHEPREFIX)
moves every cache into one folder outside the worktree, keeping the speed of cached bytecode.
A user's own ``PYTHONPYCACHEPREFIX`` or ``PYTHONDONTWRITEBYTECODE`` is left as it is.
"""

from __future__ import annotations

from collections.abc import MutableMapping

from engine.config import user_cache_dir

BYTECODE_VARS = ("PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE")


def pycache_prefix() -> str:
    """``<user cache>/mission-control/pycache`` (created by Python on first write)."""
    return str(user_cache_dir() / "mission-control" / "pycache")


def keep_bytecode_out(env: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Set ``PYTHONPYCACHEPREFIX`` in ``env`` unless the user chose a bytecode setting."""
    if not any(env.get(name) for name in BYTECODE_VARS):
        env["PYTHONPYCACHEPREFIX"] = pycache_prefix()
    return env
