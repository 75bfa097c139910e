"""The ``episodic_memory`` built-in plugin: writes an episode per finished unit (after each
epoch) and per finished mission, and recalls the relevant ones into planner prompts
(``planning_notes``, query: the objective) and worker prompts (``worker_notes``, query: the
unit's title and files), each within ``[episodic_memory] prompt_tokens``.

Settings: ``[episodic_memory]`` (enabled, max_episodes, similarity_threshold,
half_life_days, prompt_tokens). Storage and scoring: :mod:`engine.learning.episodes`.

The ``context_store`` built-in plugin: takes in the discoveries, gotchas and conventions
workers report (``unit.context`` events) and shows the ones in scope to later workers
(``worker_notes``), within ``[plugins.context_store] prompt_tokens``. Storage and scope:
:mod:`engine.learning.context`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import Field

from engine.learning import context, episodes
from engine.models import MissionStatus, UnitStatus
from engine.plugins import EpochView, Plugin, PluginConfig

if TYPE_CHECKING:
    from engine.runtime import Runtime

FINAL_UNIT = (UnitStatus.MERGED, UnitStatus.FAILED, UnitStatus.BLOCKED)


def unit_query(unit: dict[str, Any]) -> str:
    """What a worker's recall searches for: its unit's title and files (the description is
    left out: it is long and generic, and would dilute the share of matched terms)."""
    files = unit.get("files_hint") or []
    if isinstance(files, str):
        files = [files]
    return " ".join([str(unit.get("title") or ""), *map(str, files)])


GIST_LINES = 3
GIST_CHARS = 240
_GIST = ("error", "fail", "must", "assert", "expected", "missing", "conflict")


def failure_gist(detail: str) -> str:
    """The telling lines of a verification or merge failure (error/assert/must lines),
    at most :data:`GIST_LINES` of them and :data:`GIST_CHARS` characters."""
    lines = [" ".join(line.split()) for line in detail.splitlines()]
    telling = [line for line in lines if line and any(w in line.lower() for w in _GIST)
               and not line.startswith(("Traceback", "File ", "----", "===="))]
    gist = "; ".join(dict.fromkeys(telling[-GIST_LINES:] or lines[-1:]))
    return gist if len(gist) <= GIST_CHARS else gist[: GIST_CHARS - 3] + "..."


def fixup_history(unit: dict[str, Any], details: list[str] | None = None) -> str:
    """Attempts, review rejections and fixup rounds, and what the first fixup was for."""
    parts = []
    if unit.get("attempt_count"):
        parts.append(f"{unit['attempt_count']} attempt(s)")
    if unit.get("review_rejections"):
        parts.append(f"{unit['review_rejections']} review rejection(s)")
    if unit.get("fixup_rounds"):
        parts.append(f"{unit['fixup_rounds']} fixup round(s)")
    text = ", ".join(parts)
    if details:
        text += f"; needed a fixup after: {failure_gist(details[0])}"
    return text


def fixup_details(rt: Runtime, unit_id: str) -> list[str]:
    """The failure output each fixup round of the unit started from (``fixup.started``)."""
    rows = rt.store.query(
        "SELECT payload FROM events WHERE mission_id = ? AND kind = 'fixup.started' "
        "AND unit_id = ? ORDER BY id", (rt.mission_id, unit_id))
    return [str(json.loads(r["payload"] or "{}").get("detail") or "") for r in rows]


def teaches(episode: dict[str, Any]) -> bool:
    """Whether an episode holds a lesson for a worker: it failed, or was rejected by review
    or repaired by a fixup on its way in (a unit merged at the first try teaches nothing)."""
    if episode.get("kind") == "mission":
        return False
    return bool(episode.get("outcome") != UnitStatus.MERGED or episode.get("failure_reason")
                or episode.get("review_feedback") or "fixup" in (episode.get("fixups") or "")
                or "rejection" in (episode.get("fixups") or ""))


def record_unit(rt: Runtime, unit: dict[str, Any], max_episodes: int) -> dict[str, Any]:
    """The episode of one finished leaf unit."""
    files = unit.get("files_hint") or []
    merged = unit["status"] == UnitStatus.MERGED
    return episodes.record(
        rt.store, kind="unit", key=str(unit["id"]), mission_id=rt.mission_id,
        unit_id=str(unit["id"]), objective=rt.objective, title=str(unit["title"]),
        files=[str(f) for f in files], outcome=str(unit["status"]),
        failure_reason="" if merged else str(unit.get("reason") or ""),
        review_feedback=str(unit.get("review_feedback") or ""),
        fixups=fixup_history(unit, fixup_details(rt, str(unit["id"]))), cost_usd=float(unit.get("cost_usd") or 0.0),
        max_episodes=max_episodes,
    )


def record_mission(rt: Runtime, status: MissionStatus, reason: str,
                   max_episodes: int) -> dict[str, Any]:
    """The episode of the mission as it ends."""
    counts = {row["status"]: row["n"] for row in rt.store.query(
        "SELECT status, COUNT(*) AS n FROM units WHERE mission_id = ? AND is_leaf = 1 "
        "GROUP BY status", (rt.mission_id,))}
    epochs = rt.store.query("SELECT COUNT(*) AS n FROM epochs WHERE mission_id = ?",
                            (rt.mission_id,))[0]["n"]
    summary = (f"{counts.get(UnitStatus.MERGED, 0)} unit(s) merged, "
               f"{counts.get(UnitStatus.FAILED, 0)} failed, {epochs} epoch(s)")
    ok = status == MissionStatus.COMPLETED
    return episodes.record(
        rt.store, kind="mission", key=str(rt.mission_id), mission_id=rt.mission_id,
        unit_id=None, objective=rt.objective, title=f"mission: {rt.objective}", files=[],
        outcome=str(status), failure_reason="" if ok else reason, review_feedback="",
        fixups=summary, cost_usd=rt.store.mission_cost(rt.mission_id),
        max_episodes=max_episodes,
    )


class EpisodicMemoryPlugin(Plugin):
    """``[episodic_memory]``: episodes of finished units and missions, recalled by BM25
    full-text search into planner and worker prompts (see :mod:`engine.learning.episodes`)."""

    name = "episodic_memory"
    builtin = True
    order = 30

    def _recall(self, rt: Runtime, query: str, *, exclude_mission: int | None,
                lessons_only: bool = False) -> list[str]:
        memory = self.mission.episodic_memory
        if not memory.enabled or memory.prompt_tokens == 0:
            return []
        found = episodes.recall(
            rt.store, query, threshold=memory.similarity_threshold,
            half_life_days=memory.half_life_days, exclude_mission=exclude_mission,
        )
        if lessons_only:
            found = [r for r in found if teaches(r.episode)]
        return episodes.within_budget([r.lesson for r in found], memory.prompt_tokens)

    def planning_notes(self, rt: Runtime) -> list[str]:
        # this mission's own failures are in the planner's context already
        return self._recall(rt, rt.objective, exclude_mission=rt.mission_id)

    def worker_notes(self, rt: Runtime, unit: dict[str, Any]) -> list[str]:
        return self._recall(rt, unit_query(unit), exclude_mission=None, lessons_only=True)

    async def epoch_executed(self, view: EpochView) -> None:
        memory = self.mission.episodic_memory
        if not memory.enabled:
            return
        rt = view.rt
        for unit in rt.store.rows("units", "epoch_id = ? AND is_leaf = 1", (view.epoch_id,),
                                  order="created_at, id"):
            if unit["status"] in FINAL_UNIT:
                record_unit(rt, unit, memory.max_episodes)

    async def mission_outcome(
        self, rt: Runtime, status: MissionStatus, reason: str
    ) -> tuple[MissionStatus, str]:
        memory = self.mission.episodic_memory
        if memory.enabled:
            # units that became final outside a completed epoch (a stop mid-epoch)
            recorded = {row["unit_id"] for row in rt.store.query(
                f"SELECT unit_id FROM {episodes.TABLE} WHERE mission_id = ?", (rt.mission_id,))
            } if episodes.TABLE in rt.store.db.table_names() else set()
            for unit in rt.store.rows("units", "mission_id = ? AND is_leaf = 1",
                                      (rt.mission_id,), order="created_at, id"):
                if unit["status"] in FINAL_UNIT and unit["id"] not in recorded:
                    record_unit(rt, unit, memory.max_episodes)
            record_mission(rt, status, reason, memory.max_episodes)
        return status, reason


class ContextStoreConfig(PluginConfig):
    prompt_tokens: int = Field(
        400, ge=0, description="Token budget of the context items in one worker prompt.")


class ContextStorePlugin(Plugin):
    """``[plugins.context_store]``: typed context (discoveries, gotchas, conventions) from
    earlier workers, shown to later workers whose files are in its scope."""

    name = "context_store"
    Config = ContextStoreConfig
    builtin = True
    order = 25  # conventions first in the "What earlier attempts learned" section

    def worker_notes(self, rt: Runtime, unit: dict[str, Any]) -> list[str]:
        budget = getattr(self.config, "prompt_tokens", 400)
        if budget == 0:
            return []
        context.ingest(rt.store)
        notes = [context.note(row) for row in context.for_unit(rt.store, unit)]
        return episodes.within_budget(notes, budget)

    async def epoch_executed(self, view: EpochView) -> None:
        context.ingest(view.rt.store)
