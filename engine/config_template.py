"""Write a commented ``mission-control.toml`` template generated from the schema.

Generating it from the models means every key is present and the template
always validates (a test round-trips it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomlkit
from pydantic import BaseModel
from tomlkit.items import Table

from engine.config import MissionConfig

SECTION_DOCS: dict[str, str] = {
    "target": "The repository to work on and what to achieve there.",
    "target.verification": (
        "The command that must pass before code reaches mc/green (on a red baseline: nothing worse)."
    ),
    "worktree": "Git-ignored files (.env, local settings) the tests need, copied from your "
    "checkout into every worktree.",
    "scheduler": "Worker agents: model and time limit per session.",
    "scheduler.budget": "Spend caps in US dollars.",
    "scheduler.parallel": "How many agents run at once, and where their worktrees live.",
    "rounds": "Epoch limits.",
    "planner": "Shape of the recursive plan tree.",
    "continuous": "Mission-level limits and the ambition / objective gates.",
    "review": "LLM review of each unit's diff before it may enter the merge queue.",
    "green_branch": "Promotion, push and N-of-M fixup.",
    "discovery": "Auto-discovery of follow-up work.",
    "models": "Models for the planner, reviewer and strategist calls.",
    "hitl": "Human-in-the-loop approval gates. A timeout denies (the safe default).",
    "hitl.telegram": (
        "Telegram approvals (docs/hitl.md): a message per approval with Approve / Deny buttons; "
        "only `chat_id` may decide; the bot token is read from the named env variable only. "
        "`telegram = true` in [hitl] means: on, with these defaults."
    ),
    "speculation": (
        "Speculation branching: several agents work one unit in parallel, each with a different "
        "approach hint; the winner per `selection` goes on, the others' worktrees return to the "
        "pool; every branch's cost counts (docs/architecture.md#speculation-branching)."
    ),
    "degradation": "Circuit breakers per component and graceful degradation.",
    "notify": "Notifications: webhook, Telegram (token from the environment), desktop.",
    "episodic_memory": "Episodes of earlier units and missions, recalled into planner and worker prompts.",
    "a2a": "Agent-to-agent (A2A) server, `mc a2a` (loopback by default; see docs/services.md).",
    "tracing": (
        "OpenTelemetry traces over OTLP/HTTP (docs/services.md#opentelemetry); no prompt or "
        "agent output is exported."
    ),
    "live": "`mc live`: the web dashboard (loopback by default; a token from the env otherwise).",
    "agent": "Which agent CLI does the work: claude | codex | gemini | aider | command | scripted.",
    "merge_queue": "Merge queue: batching (1 = plain serial queue) and speculative parallel "
    "verification (docs/gitops.md).",
    "state": "Where the store lives (default: inside the target's .git/mc). Worktrees never live "
    "inside .git: see scheduler.parallel.pool_dir.",
    "ui": "Terminal UI: theme, refresh rate, key remapping.",
}


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _fill(table: Table, model: BaseModel, prefix: str, objective: str, name: str) -> None:
    nested: list[tuple[str, BaseModel]] = []
    for field_name, field in type(model).model_fields.items():
        value = getattr(model, field_name)
        if isinstance(value, BaseModel):
            nested.append((field_name, value))
            continue
        key_path = f"{prefix}.{field_name}"
        if key_path == "target.objective":
            value = objective
        elif key_path == "target.name":
            value = name
        if value is None:
            table.add(tomlkit.comment(f"{field_name} = ...  # {field.description or ''}".rstrip()))
            continue
        item = tomlkit.item(_plain(value))
        if field.description:
            item.comment(field.description)
        table.add(field_name, item)
    for field_name, sub in nested:
        sub_table = tomlkit.table()
        doc = SECTION_DOCS.get(f"{prefix}.{field_name}")
        if doc:
            sub_table.add(tomlkit.comment(doc))
        _fill(sub_table, sub, f"{prefix}.{field_name}", objective, name)
        table.add(field_name, sub_table)


def render_template(objective: str = "Describe what the agents should achieve", name: str = "project") -> str:
    """The commented TOML text of a config with every key at its default."""
    defaults = MissionConfig.model_construct()
    doc = tomlkit.document()
    doc.add(tomlkit.comment("Mission Control configuration. Every key is optional; shown are the defaults."))
    doc.add(tomlkit.comment("Environment variables override keys: MC_SCHEDULER__PARALLEL__NUM_WORKERS=4"))
    doc.add(tomlkit.nl())
    for section_name, field in MissionConfig.model_fields.items():
        if section_name in ("plugins", "hosts"):  # a list / per-plugin sections: comments below
            continue
        value = getattr(defaults, section_name, None)
        if value is None:
            value = field.get_default(call_default_factory=True)
        table = tomlkit.table()
        doc_line = SECTION_DOCS.get(section_name)
        if doc_line:
            table.add(tomlkit.comment(doc_line))
        _fill(table, value, section_name, objective, name)
        doc.add(section_name, table)
    doc.add(tomlkit.comment("[plugins.<name>]: each installed plugin's own section, e.g. "
                            "enabled = false (docs/plugins.md)"))
    doc.add(tomlkit.comment("[[hosts]]: where agents run, e.g. kind = \"sandbox\" (bubblewrap) or \"ssh\", "
                            "slots = 2; none: local processes (docs/hosts.md)"))
    return tomlkit.dumps(doc)


def write_template(path: Path, *, force: bool = False, **kwargs: str) -> None:
    if path.exists() and not force:
        raise FileExistsError(f"{path} already exists (use --force to overwrite)")
    path.write_text(render_template(**kwargs))
