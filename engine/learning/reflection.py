"""Reflections: after an epoch in which something failed, one LLM call (role
``reflection``, on the planner's model and backend, through ``rt.llm``; prompt ``engine/prompts/reflection.md``)
says what failed and why; the answer is stored and fed to the next plan.

A row of ``reflections`` (created on first use)::

    id INT, mission_id INT, epoch_id INT, number INT (the epoch's number),
    text TEXT (what went wrong and why), lessons TEXT (JSON list of sentences),
    failed TEXT (JSON list of the failed unit ids), created_at REAL

The ``reflections`` built-in plugin (:class:`ReflectionPlugin`): ``after_epoch`` reflects
(only when a leaf unit of the epoch failed or was blocked, at most once per epoch, also
across a resume); ``planning_notes`` gives the planner the mission's last reflections within
``[plugins.reflections] prompt_tokens``. A failed call is logged and skipped: a reflection
never stops a mission.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from pydantic import Field

from engine.learning.episodes import within_budget
from engine.models import UnitStatus
from engine.plugins import EpochView, Plugin, PluginConfig
from engine.prompts import render

if TYPE_CHECKING:
    from engine.runtime import Runtime
    from engine.store import Store

TABLE = "reflections"
ROLE = "reflection"
MAX_TEXT = 600
MAX_LESSONS = 5
MAX_LESSON = 240
MAX_FAILED_SHOWN = 12


def ensure_schema(store: Store) -> None:
    with store.transaction():
        if TABLE not in store.db.table_names():
            store.db[TABLE].create(
                {"id": int, "mission_id": int, "epoch_id": int, "number": int, "text": str,
                 "lessons": str, "failed": str, "created_at": float},
                pk="id", not_null={"mission_id", "epoch_id", "text", "lessons"},
            )
            store.db[TABLE].create_index(["mission_id", "epoch_id"], unique=True)


def parse_reflection(answer: str) -> tuple[str, list[str]]:
    """(text, lessons) from the model's answer: the JSON object asked for, or, failing
    that, the answer's text itself (clipped) with no lessons."""
    from engine.planning.parse import PlanParseError, extract_json

    try:
        data = extract_json(answer)
    except (PlanParseError, ValueError):
        data = None
    if isinstance(data, dict):
        text = " ".join(str(data.get("reflection") or "").split())
        raw = data.get("lessons") or []
        raw = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        lessons = [" ".join(str(x).split())[:MAX_LESSON] for x in raw if str(x).strip()]
        return text[:MAX_TEXT], lessons[:MAX_LESSONS]
    return " ".join(answer.split())[:MAX_TEXT], []


def stored(store: Store, mission_id: int) -> list[dict[str, Any]]:
    """The mission's reflections, oldest first (``lessons`` decoded)."""
    if TABLE not in store.db.table_names():
        return []
    rows = store.query(f"SELECT * FROM {TABLE} WHERE mission_id = ? ORDER BY number, id",
                       (mission_id,))
    for row in rows:
        row["lessons"] = json.loads(row["lessons"] or "[]")
    return rows


def note(row: dict[str, Any]) -> str:
    lessons = "; ".join(row["lessons"])
    return f"reflection after epoch {row['number']}: {row['text']}" + (
        f" Lessons: {lessons}" if lessons else "")


def failed_units(rt: Runtime, epoch_id: int) -> list[dict[str, Any]]:
    return [u for u in rt.store.rows("units", "epoch_id = ? AND is_leaf = 1", (epoch_id,),
                                     order="created_at, id")
            if u["status"] in (UnitStatus.FAILED, UnitStatus.BLOCKED)]


def build_prompt(rt: Runtime, number: int, failed: list[dict[str, Any]],
                 merged: list[str], earlier: list[dict[str, Any]]) -> str:
    def line(u: dict[str, Any]) -> str:
        files = ", ".join(u.get("files_hint") or [])
        parts = [f"- {u['title']}" + (f" ({files})" if files else "")
                 + f": {u['status']}: {(u.get('reason') or 'no reason recorded')[:400]}"]
        if u.get("review_feedback"):
            parts.append(f"  review: {u['review_feedback'][:300]}")
        return "\n".join(parts)

    shown = failed[:MAX_FAILED_SHOWN]
    more = len(failed) - len(shown)
    return render(
        "reflection", objective=rt.objective.strip() or "(none)", epoch=number,
        merged="\n".join(f"- {t}" for t in merged) or "- (nothing)",
        failed="\n".join(map(line, shown)) + (f"\n- ... and {more} more" if more > 0 else ""),
        earlier="\n".join(f"- {note(r)}" for r in earlier) or "- (none)",
    )


async def reflect(rt: Runtime, epoch_id: int, number: int) -> dict[str, Any] | None:
    """Reflect on epoch ``epoch_id`` if a leaf unit of it failed and it has no reflection
    yet; store and return the row (None: nothing to reflect on, or already done)."""
    store = rt.store
    ensure_schema(store)
    if store.query(f"SELECT 1 FROM {TABLE} WHERE mission_id = ? AND epoch_id = ?",
                   (rt.mission_id, epoch_id)):
        return None
    failed = failed_units(rt, epoch_id)
    if not failed:
        return None
    merged = [u["title"] for u in store.rows(
        "units", "epoch_id = ? AND is_leaf = 1 AND status = ?", (epoch_id, UnitStatus.MERGED))]
    prompt = build_prompt(rt, number, failed, merged, stored(store, rt.mission_id))
    answer = await rt.llm.ask(ROLE, prompt, metadata={"epoch": str(number)})
    text, lessons = parse_reflection(answer)
    if not text and not lessons:
        return None
    row = {"mission_id": rt.mission_id, "epoch_id": epoch_id, "number": number,
           "text": store._clean(text), "lessons": json.dumps(store._clean(lessons)),
           "failed": json.dumps([u["id"] for u in failed]), "created_at": time.time()}
    with store.transaction():
        row["id"] = store.db[TABLE].insert(row).last_pk
        store.append_event("reflection", mission_id=rt.mission_id, epoch=number,
                           text=text, lessons=lessons, failed=[u["id"] for u in failed])
    return row


class ReflectionsConfig(PluginConfig):
    prompt_tokens: int = Field(
        300, ge=0, description="Token budget of the reflections in the planner's prompt.")
    keep: int = Field(3, ge=1, description="The mission's last reflections the planner sees.")


class ReflectionPlugin(Plugin):
    """``[plugins.reflections]``: a short reflection on each epoch in which something
    failed (one planner-model call), fed to the next plan."""

    name = "reflections"
    Config = ReflectionsConfig
    builtin = True
    order = 32

    async def after_epoch(self, view: EpochView) -> None:
        from engine.llm import LlmCallFailed

        result = view.result
        if (result is not None and result.stop is not None) \
                or view.number >= self.mission.rounds.max_rounds:
            return  # the mission stops: there is no next plan to inform
        try:
            await reflect(view.rt, view.epoch_id, view.number)
        except LlmCallFailed as exc:  # a reflection is advice: never stop the mission for it
            view.rt.log(f"reflection on epoch {view.number} skipped: {exc}", level="warning")

    def planning_notes(self, rt: Runtime) -> list[str]:
        cfg = self.config
        rows = stored(rt.store, rt.mission_id)[-getattr(cfg, "keep", 3):]
        return within_budget([note(r) for r in reversed(rows)], getattr(cfg, "prompt_tokens", 300))
