"""An in-process mission runtime on a real repo with scripted agents, for engine-level tests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pygit2

from engine.config import load_config
from engine.controller import Controller
from engine.gitops.repo import GREEN_REF
from engine.models import UnitStatus
from engine.runtime import Runtime
from engine.store import Store
from tests.e2e.conftest import make_target, write_config


def make_controller(tmp_path: Path, cassette: str, extra: str = "") -> Controller:
    """A prepared controller (it holds the mission lock) on a fresh target repo."""
    make_target(tmp_path)
    config = load_config(write_config(tmp_path, cassette, extra))
    controller = Controller(config, Store(config.state_dir() / "mission.db"))
    controller.prepare()
    return controller


def make_runtime(tmp_path: Path, cassette: str, extra: str = "") -> Runtime:
    """A prepared mission (store, pool, queue, scripted backend) on a fresh target repo."""
    rt = make_controller(tmp_path, cassette, extra).rt
    assert rt is not None
    return rt


def commit_on_branch(rt: Runtime, branch: str, start: str, path: str, text: str, message: str) -> str:
    """A commit of ``path`` on ``branch`` (moved to ``start`` first), never touching a checkout."""
    repo = rt.repo.pygit
    parent = repo[pygit2.Oid(hex=start)].peel(pygit2.Commit)
    index = pygit2.Index()
    index.read_tree(parent.tree)
    index.add(pygit2.IndexEntry(path, repo.create_blob(text.encode()), pygit2.enums.FileMode.BLOB))
    sig = pygit2.Signature("test", "test@localhost")
    oid = repo.create_commit(None, sig, sig, message, index.write_tree(repo), [parent.id])
    repo.references.create(f"refs/heads/{branch}", oid, force=True)
    return str(oid)


def move_green(rt: Runtime, base: str) -> str:
    """Another unit's work lands on ``mc/green`` (a commit on top of ``base``); returns it."""
    moved = commit_on_branch(rt, "mc/other", base, "NOTES.md", "notes\n", "other work")
    rt.repo.set_owned_ref(GREEN_REF, moved, "test: green moved")
    return moved


def add_unit(rt: Runtime, unit_id: str, status: UnitStatus, **fields: Any) -> None:
    """One leaf unit in epoch 1 (created on first use)."""
    store = rt.store
    now = time.time()
    with store.transaction():
        epochs = store.rows("epochs", "mission_id = ?", (rt.mission_id,))
        epoch = epochs[0]["id"] if epochs else store.insert(
            "epochs", {"mission_id": rt.mission_id, "number": 1, "status": "running",
                       "started_at": now})
        store.insert("units", {
            "id": unit_id, "mission_id": rt.mission_id, "epoch_id": epoch, "title": "Friendlier",
            "description": "d", "is_leaf": 1, "status": status.value, "created_at": now,
            "updated_at": now, **fields,
        })


def events(rt: Runtime, kind: str) -> list[dict[str, Any]]:
    return [e.payload for e in rt.store.events_after(0) if e.kind == kind]
