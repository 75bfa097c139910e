"""Render docs/config.md from the schema, so the reference can never drift from the code.

``uv run python -m engine.config_docs > docs/config.md`` regenerates it; a test checks it is current.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from engine.config import MissionConfig
from engine.config_template import SECTION_DOCS

HEADER = """# Configuration reference

`mission-control.toml` (default: `./mission-control.toml`, or `--config PATH`). Every key is optional.
`mc init` writes this whole file with comments; `mc validate-config` checks one.

- **Environment overrides**: `MC_<SECTION>__<KEY>` (double underscore between levels) wins over the
  file, e.g. `MC_SCHEDULER__PARALLEL__NUM_WORKERS=8`, `MC_TARGET__VERIFICATION__COMMAND='make test'`.
  Lists take JSON: `MC_HITL__GATES='["push"]'`; booleans take `true`/`false` (also `1`/`0`,
  `yes`/`no`, `on`/`off`), e.g. `MC_REVIEW__GATE_COMPLETION=false`. An `MC_...__...` variable that
  names no key is an error. Command-line flags (`--workers`, `--objective`) win over both.
- **Paths** (`target.path`, `scheduler.parallel.pool_dir`, `agent.cassette`, `state.dir`,
  `hitl.approval_file`) resolve against the config file's folder; `~` expands.
- **Where things live**: the store in `<git dir>/mc/mission.db` (or `state.dir`); the agents'
  worktrees never inside a `.git` directory (Claude Code refuses every edit there): by default
  `$XDG_CACHE_HOME` (or `~/.cache`)`/mission-control/pools/<repo>-<hash of its git dir>`, or
  `<state.dir>/pool` when `state.dir` is outside `.git`, or `scheduler.parallel.pool_dir`. A
  `pool_dir` inside `.git` with the claude backend is an error (unless
  `agent.permission_mode = "bypassPermissions"`). A pool of an earlier version
  (`<git dir>/mc/pool`) is moved at mission start, uncommitted unit work saved first.
- **Agent permissions**: workers get a headless profile (docs/agents.md); `agent.allowed_tools`
  *adds* rules to it, `agent.permission_mode` *replaces* the workers' mode. Read-only roles stay
  in plan mode. `bypassPermissions` turns every check off: opt-in, said at start and in the TUI.
- **Errors** name the key path and the reason and exit with code 2: unknown keys (with a "did you
  mean"), wrong types, out-of-range values, invalid TOML (with line and column), a missing file.
  In the file a boolean is a TOML boolean: `enabled = "yes"` or `= 1` is an error ("must be true
  or false").
- **Secrets** are never read from this file: the Telegram bot token comes from the environment
  variable named by `hitl.telegram.token_env`. A git remote URL (`green_branch.remote`,
  `[[hosts]] remote`) with a credential in it (`https://ghp_xxx@github.com/o/r.git`,
  `https://user:token@host/...`) is an error, its secret never echoed: git gets it from a
  credential helper or `GIT_ASKPASS`. `git@host:o/r.git` and `ssh://git@host/o/r.git` are fine.
- **Compatibility with the original tool**: its documented example
  (`examples/mission-control.original.toml`) validates as is. Three of its values are spelled the
  original's way and mean: `hitl.telegram = true` is `[hitl.telegram] enabled = true` with every
  other key at its default (`false`: off); `speculation.selection = "best_score"` picks the branch
  with the best verification result, then the best review score, then the smallest diff;
  `degradation.fallback_strategy = "simple"` falls back to a simpler way of working while the
  breaker is open: half the workers, each in one pass (no architect pass even with
  `agent.two_pass`), one agent per unit (no speculation branches).
- Telegram switched on without a `chat_id` or without its token in the environment is reported
  by `mc validate-config` and at mission start: it stays off until both are there (docs/hitl.md).
- `[tracing]`: OpenTelemetry traces of each mission, see
  [services.md](services.md#opentelemetry).
"""


def _type_name(annotation: Any) -> str:
    text = str(annotation)
    for noise in ("typing.", "<class '", "'>", "pathlib.", "engine.config."):
        text = text.replace(noise, "")
    return text.replace("|", "\\|")


def _default(value: Any) -> str:
    if value is None:
        return "(derived)"
    if isinstance(value, Path):
        return repr(str(value))
    return repr(value)


def _section(model: BaseModel, prefix: str) -> list[str]:
    rows: list[str] = []
    nested: list[tuple[str, BaseModel]] = []
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            nested.append((name, value))
            continue
        rows.append(
            f"| `{name}` | `{_type_name(field.annotation)}` | `{_default(value)}` | "
            f"{field.description or ''} |"
        )
    out: list[str] = []
    if rows:
        out += [f"## `[{prefix}]`", ""]
        if prefix in SECTION_DOCS:
            out += [SECTION_DOCS[prefix], ""]
        out += ["| key | type | default | meaning |", "|---|---|---|---|", *rows, ""]
    for name, sub in nested:
        out += _section(sub, f"{prefix}.{name}")
    return out


def _hosts_sections() -> list[str]:
    """``[[hosts]]``: one table per kind that is built (docs/hosts.md)."""
    from engine.host_config import (
        LocalHostConfig,
        RayHostConfig,
        SandboxHostConfig,
        SshHostConfig,
    )

    out = ["## `[[hosts]]`", "",
           "Where agents run, one entry per host (none: local processes, "
           "`scheduler.parallel.num_workers` slots). `kind = \"container\"` is not available in "
           "this version: a config naming it is an error. See docs/hosts.md.", ""]
    for model in (LocalHostConfig(), SandboxHostConfig(), SshHostConfig(address=""),
                  RayHostConfig()):
        rows = _section(model, "hosts")
        table = rows[rows.index("| key | type | default | meaning |"):]
        out += [f"### `kind = \"{model.kind}\"`", "", *table]
    return out


def render_reference() -> str:
    lines = [HEADER]
    for name, field in MissionConfig.model_fields.items():
        if name == "plugins":  # one section per installed plugin: docs/plugins.md
            continue
        if name == "hosts":  # a list of tables, one per kind
            lines += _hosts_sections()
            continue
        lines += _section(field.get_default(call_default_factory=True), name)
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_reference(), end="")
