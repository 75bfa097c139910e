"""A frozen mission state for the TUI's pane tests and benchmark (test support). The SVG
snapshots show a mission the real pipeline recorded instead (``recorded_world.py``).

:class:`SyntheticMission` fills a store with a mission in every state at once (two epochs, a
plan tree with units running, reviewing, queued, merging, verifying, in fixup, failed and
merged, attempts with agent events, fixup candidates, approvals, costs), deterministic for a
seed and stamped from a fixed ``base_ts`` so screenshots are stable; with ``repo`` it makes
real commits (pygit2, fixed signatures) so diffs are real. No single engine run reaches all
of these states at one instant, which is why it is written rather than recorded; it cannot
drift from the engine unnoticed: ``tests/tui/test_fixture_drift.py`` checks that every kind
it writes is one the engine emits and that its payloads have the keys a real run's have.

The live engine of the TUI tests is the real one: ``tests/support/scripted_mission.py``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.store import Store

BASE_TS = 1_700_000_000.0
MODELS = ("sonnet", "opus", "haiku")
SPECIALISTS = ("backend", "tests", "docs", "refactor", "security")

_PLAN = [
    ("Harden the config loader", ["Reject unknown keys with hints", "Env overrides for nested keys",
                                  "Friendly TOML errors"]),
    ("Speed up the merge queue", ["Batch verification", "Bisect failing batches", "Journal steps",
                                  "Reconcile on start-up"]),
    ("Improve agent logging", ["Fold tool results", "Redact secrets in logs"]),
    ("Tighten security", ["Sandbox the agent env", "Audit secret redaction", "Rate-limit retries"]),
]
_TOOLS = ("Read", "Edit", "Bash", "Grep", "Write")


def frozen_clock(ts: float) -> Callable[[], float]:
    """A clock that always returns ``ts`` (stable screenshots)."""
    return lambda: ts


class SyntheticMission:
    """Writes one realistic, deterministic mission into ``store``."""

    def __init__(
        self, store: Store, *, seed: int = 7, base_ts: float = BASE_TS, repo: Path | None = None,
        objective: str = "Make the parser robust and the merge queue fast", num_workers: int = 4,
        pending_approval: bool = True,
    ) -> None:
        self.store = store
        self.rng = random.Random(seed)
        self.base_ts = base_ts
        self.repo = repo
        self.objective = objective
        self.num_workers = num_workers
        self.with_pending_approval = pending_approval
        self.pending_approval: int | None = None
        self.mission_id = 0
        self.now = base_ts
        self.commits: dict[str, tuple[str, str]] = {}

    # ------------------------------------------------------------------ low level
    def _tick(self, seconds: float) -> float:
        self.now += seconds
        return self.now

    def event(self, kind: str, *, unit_id: str | None = None, **payload: Any) -> None:
        """An event row stamped with the synthetic clock."""
        with self.store.transaction():
            ev = self.store.append_event(kind, mission_id=self.mission_id, unit_id=unit_id, **payload)
            self.store.conn.execute("UPDATE events SET ts = ? WHERE id = ?", (self.now, ev.id))

    def status(self, table: str, row_id: Any, old: str, new: str, **extra: Any) -> None:
        self.event(f"{table[:-1]}.status", unit_id=row_id if table == "units" else extra.pop("unit_id", None),
                   id=row_id, **{"from": old, "to": new}, **extra)

    def cost(self, *, role: str, usd: float, model: str, unit_id: str | None = None,
             attempt_id: int | None = None) -> None:
        s = self.store
        with s.transaction():
            s.insert("costs", {"mission_id": self.mission_id, "unit_id": unit_id, "attempt_id": attempt_id,
                               "role": role, "model": model, "usd": usd, "estimated": 0, "ts": self.now})
            s.conn.execute("UPDATE missions SET total_cost_usd = total_cost_usd + ? WHERE id = ?",
                           (usd, self.mission_id))
            if unit_id:
                s.conn.execute("UPDATE units SET cost_usd = cost_usd + ? WHERE id = ?", (usd, unit_id))
            self.event("cost", unit_id=unit_id, role=role, model=model, usd=usd, estimated=False)

    # ------------------------------------------------------------------ git
    def _git_setup(self) -> Any:
        import pygit2

        assert self.repo is not None
        if (self.repo / ".git").exists():
            repo = pygit2.Repository(str(self.repo))
        else:
            repo = pygit2.init_repository(str(self.repo), initial_head="main")
        self._sig = pygit2.Signature("mc synthetic", "mc@example.invalid", int(self.base_ts), 0)
        files = {
            "README.md": "# target\n",
            "src/config.py": "def load(path):\n    return open(path).read()\n",
            "src/queue.py": "def merge(branches):\n    for b in branches:\n        pass\n",
        }
        if "refs/heads/main" in repo.references:
            self._base = repo.references["refs/heads/main"].target
            return repo
        tree = self._tree(repo, None, files)
        self._base = repo.create_commit("refs/heads/main", self._sig, self._sig, "initial", tree, [])
        return repo

    def _tree(self, repo: Any, parent_tree: Any, files: dict[str, str]) -> Any:
        import pygit2

        index = pygit2.Index()
        if parent_tree is not None:
            index.read_tree(parent_tree)
        for path, text in files.items():
            blob = repo.create_blob(text.encode())
            index.add(pygit2.IndexEntry(path, blob, pygit2.enums.FileMode.BLOB))
        return index.write_tree(repo)

    def _unit_commit(self, repo: Any, unit_id: str, title: str) -> tuple[str, str]:
        base = repo.get(self._base)
        slug = unit_id.lower().replace("-", "_")
        lines = [f"# {title}", f"def {slug}(value):", "    if value is None:",
                 "        raise ValueError('missing value')", "    return value", ""]
        changed = {f"src/{slug}.py": "\n".join(lines),
                   "src/config.py": base.tree["src/config.py"].data.decode()
                   + f"\n# {unit_id}: {title}\n"}
        tree = self._tree(repo, base.tree, changed)
        head = repo.create_commit(None, self._sig, self._sig, f"{unit_id}: {title}", tree, [self._base])
        repo.references.create(f"refs/heads/mc/unit/{unit_id}", head, force=True)
        return str(self._base), str(head)

    # ------------------------------------------------------------------ the mission
    def write(self) -> int:
        """Write the whole mission; returns its id."""
        s = self.store
        repo = self._git_setup() if self.repo is not None else None
        project = s.ensure_project("synthetic", self.repo or Path("/nonexistent/synthetic"))
        self.mission_id = s.insert("missions", {
            "project_id": project, "objective": self.objective, "status": "running",
            "base_branch": "main", "started_at": self.base_ts, "total_cost_usd": 0.0,
        })
        self.event("mission.created", id=self.mission_id)
        self.status("missions", self.mission_id, "pending", "running")
        statuses_e1 = ["merged", "merged", "merged"]
        statuses_e2 = ["running", "running", "reviewing", "queued", "merging", "verifying",
                       "fixup", "failed", "planned"]
        busy: set[int] = set()  # slots held by attempts still running
        turn = 0
        merge_batch = 0
        for number, (epoch_plan, statuses) in enumerate(((_PLAN[:1], statuses_e1), (_PLAN[1:], statuses_e2)), 1):
            epoch_id = s.insert("epochs", {"mission_id": self.mission_id, "number": number,
                                           "status": "completed" if number == 1 else "running",
                                           "plan_score": 7.5, "started_at": self._tick(5)})
            self.event("epoch.created", id=epoch_id)
            self.cost(role="planner", usd=round(self.rng.uniform(0.2, 0.6), 3), model="opus")
            self.event("plan.scored", score=7.5, llm_score=7.0, heuristic_score=8.0, accepted=True,
                       feedback="ambitious enough")
            leaf_status = iter(statuses)
            for p_index, (parent_title, leaves) in enumerate(epoch_plan):
                parent_id = f"E{number}-{p_index + 1}"
                self._unit(parent_id, epoch_id, None, parent_title, is_leaf=False, status="planned")
                for l_index, leaf_title in enumerate(leaves):
                    unit_id = f"{parent_id}.{l_index + 1}"
                    status = next(leaf_status, "planned")
                    self._unit(unit_id, epoch_id, parent_id, leaf_title, is_leaf=True, status="planned")
                    if status == "planned":
                        continue
                    free = [n for n in range(1, self.num_workers + 1) if n not in busy]
                    slot = free[turn % len(free)]
                    turn += 1
                    if status == "running":
                        busy.add(slot)
                    self._work(unit_id, leaf_title, status, slot, repo)
                    if status in ("queued", "merging", "verifying", "merged", "fixup", "failed"):
                        merge_batch += 1 if status != "merged" or l_index == 0 else 0
                        self._merge(unit_id, status, f"b{merge_batch}")
            if number == 1:
                self._tick(30)
                s.update("epochs", epoch_id, ended_at=self.now)
                self.event("green.promoted", **{"from": "aaaa111", "to": "bbbb222", "units": 3})
        fixup = [u["id"] for u in s.units(self.mission_id) if u["status"] == "fixup"]
        if fixup:
            self._fixups(fixup[0])
        self._approvals()
        self.event("log", level="info", message="dispatching epoch 2")
        return int(self.mission_id)

    def _unit(self, unit_id: str, epoch_id: int, parent: str | None, title: str, *,
              is_leaf: bool, status: str) -> None:
        self.store.insert("units", {
            "id": unit_id, "mission_id": self.mission_id, "epoch_id": epoch_id, "parent_id": parent,
            "title": title, "description": f"{title}. Keep the public API stable.",
            "files_hint": ["src/config.py"], "acceptance_criteria": [f"{title} is covered by a test",
                                                                    "pytest -q passes"],
            "specialist": self.rng.choice(SPECIALISTS), "priority": self.rng.randint(1, 5),
            "is_leaf": int(is_leaf), "status": status, "created_at": self._tick(1), "updated_at": self.now,
        })
        self.event("unit.created", unit_id=unit_id, id=unit_id)

    def _work(self, unit_id: str, title: str, final: str, slot: int, repo: Any) -> None:
        s = self.store
        model = self.rng.choice(MODELS[:2])
        started = self._tick(3)
        running = final == "running"
        attempt_id = s.insert("attempts", {
            "mission_id": self.mission_id, "unit_id": unit_id, "role": "worker", "backend": "claude",
            "model": model, "slot": slot, "status": "running", "started_at": started,
        })
        self.status("units", unit_id, "planned", "running")
        self.event("attempt.started", unit_id=unit_id, attempt_id=attempt_id, role="worker",
                   backend="claude", model=model, slot=slot)
        turns = self.rng.randint(3, 7)
        for turn in range(turns):
            self._tick(self.rng.uniform(2, 6))
            tool = self.rng.choice(_TOOLS)
            self.event("agent.event", unit_id=unit_id, attempt_id=attempt_id, slot=slot, type="text",
                       text=f"Turn {turn + 1}: working on {title.lower()}", tool=None)
            self.event("agent.event", unit_id=unit_id, attempt_id=attempt_id, slot=slot, type="tool_use",
                       text=f"src/{unit_id.lower()}.py", tool=tool)
            self.event("agent.event", unit_id=unit_id, attempt_id=attempt_id, slot=slot,
                       type="tool_result", text="ok\n" + "\n".join(f"line {i}" for i in range(turn + 2)),
                       tool=tool)
            self.cost(role="worker", usd=round(self.rng.uniform(0.05, 0.4), 3), model=model,
                      unit_id=unit_id, attempt_id=attempt_id)
        fields: dict[str, Any] = {"branch": f"mc/unit/{unit_id}", "attempt_count": 1}
        if repo is not None:
            base, head = self._unit_commit(repo, unit_id, title)
        else:
            base = f"{self.rng.getrandbits(160):040x}"
            head = f"{self.rng.getrandbits(160):040x}"
        fields.update(base_commit=base, head_commit=head)
        if running:
            s.update("units", unit_id, status="running", **{k: v for k, v in fields.items()
                                                            if k in ("branch", "attempt_count")})
            s.update("attempts", attempt_id, turns=turns)
            return
        cost = s.query("SELECT COALESCE(SUM(usd),0) AS c FROM costs WHERE attempt_id = ?", (attempt_id,))[0]["c"]
        s.update("attempts", attempt_id, status="completed", turns=turns, cost_usd=cost, ended_at=self._tick(1))
        self.event("attempt.finished", unit_id=unit_id, attempt_id=attempt_id, status="completed",
                   cost_usd=cost, turns=turns)
        if final == "failed":  # the culprit of a failed verification batch
            fields["reason"] = "verification failed: 2 tests"
        score = round(self.rng.uniform(6.5, 9.5), 1)
        self.cost(role="reviewer", usd=round(self.rng.uniform(0.02, 0.1), 3), model="sonnet", unit_id=unit_id)
        self.event("review.scored", unit_id=unit_id, score=score, alignment=score, approach=score - 0.5,
                   tests=score, passed=True, feedback="clean change, tests included")
        s.update("units", unit_id, status=final, review_score=score,
                 review_feedback="clean change, tests included", **fields)
        self.status("units", unit_id, "running", final)

    def _merge(self, unit_id: str, status: str, batch: str) -> None:
        s = self.store
        merge_status = {"merged": "promoted", "fixup": "conflict"}.get(status, status)
        unit = s.get("units", unit_id) or {}
        merge_id = s.insert("merges", {
            "mission_id": self.mission_id, "unit_id": unit_id, "batch_id": batch,
            "branch": f"mc/unit/{unit_id}", "head_commit": unit.get("head_commit"), "status": merge_status,
            "conflict_paths": ["src/queue.py"] if merge_status == "conflict" else [],
            "reason": "verification failed: 2 tests" if merge_status == "failed" else None,
            "created_at": self._tick(2), "updated_at": self._tick(1),
        })
        self.event("merge.created", unit_id=unit_id, id=merge_id, branch=f"mc/unit/{unit_id}")
        if merge_status in ("verifying", "promoted", "failed"):
            running = merge_status == "verifying"
            vid = s.insert("verifications", {
                "mission_id": self.mission_id, "batch_id": batch, "commit_sha": "c0ffee" + batch,
                "command": "pytest -q", "status": "running" if running else
                ("passed" if merge_status == "promoted" else "failed"),
                "started_at": self.now, "duration_s": None if running else 41.0,
                "ended_at": None if running else self.now + 41,
            })
            self.event("verification.started", id=vid, commit="c0ffee" + batch, status="running")
        if merge_status != "queued":
            self.status("merges", merge_id, "queued", merge_status, unit_id=unit_id)

    def _fixups(self, unit_id: str) -> None:
        """N-of-M fixup events with the payloads engine/fixup.py writes."""
        self._tick(5)
        approaches = ("Fix the implementation so that the existing tests pass.",
                      "Check whether the failing tests are wrong; adjust them or fix the code.",
                      "Re-do the unit's change minimally on top of the green branch.")
        self.event("fixup.started", unit_id=unit_id, round=1, candidates=3,
                   detail="conflict in src/e2-3.1.py")
        results = [(11, 1, 0, 40, False), (12, 0, 2, 31, True), (12, 0, 0, 18, True)]
        for n, (approach, (passed, failed, lint, lines, ok)) in enumerate(zip(approaches, results,
                                                                            strict=True), 1):
            self._tick(20)
            self.event("fixup.candidate", unit_id=unit_id, round=1, candidate=n, approach=approach,
                       branch=f"mc/fixup/{unit_id}/1-{n}", verified=ok, tests_passed=passed,
                       tests_failed=failed, lint_errors=lint, diff_lines=lines,
                       agent_status="completed")
        self.event("fixup.winner", unit_id=unit_id, round=1, candidate=3, approach=approaches[2],
                   verified=True, tests_passed=12, head="0" * 40)

    def _approvals(self) -> None:
        s = self.store
        decided = s.insert("approvals", {
            "mission_id": self.mission_id, "unit_id": "E1-1.1", "gate": "large_merge", "status": "approved",
            "title": "Merge 612 changed lines from E1-1.1", "diffstat": "", "diff": "",
            "created_at": self._tick(3), "expires_at": self.now + 300, "decided_at": self._tick(20),
            "decided_by": "cli",
        })
        self.event("approval.requested", id=decided, gate="large_merge", title="Merge 612 lines",
                   expires_at=self.now + 280)
        self.status("approvals", decided, "pending", "approved")
        if not self.with_pending_approval:
            return
        unit = "E2-1.3" if s.get("units", "E2-1.3") else None
        self.pending_approval = s.insert("approvals", {
            "mission_id": self.mission_id, "unit_id": unit, "gate": "push", "status": "pending",
            "title": "Push mc/green to origin/main (3 units)", "diffstat": "", "diff": "",
            "created_at": self._tick(4), "expires_at": self.now + 300,
        })
        self.event("approval.requested", id=self.pending_approval, gate="push",
                   title="Push mc/green to origin/main", expires_at=self.now + 300)


def write_synthetic_mission(store: Store, **kwargs: Any) -> SyntheticMission:
    """Convenience: build and write a :class:`SyntheticMission`; returns it (``.mission_id``)."""
    mission = SyntheticMission(store, **kwargs)
    mission.write()
    return mission
