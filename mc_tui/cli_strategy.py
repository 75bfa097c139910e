"""``mc priority``, ``mc discover``, ``mc prompts``: the backlog, auto-discovery and prompt
variants (``docs/learning.md``). Registered on the ``mc`` group by ``register``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from mc_tui.exit_codes import EXIT_FAILED

if TYPE_CHECKING:
    from engine.config import MissionConfig
    from engine.store import Store


def _cli() -> object:
    from mc_tui import cli

    return cli


def _store(config: MissionConfig, *, create: bool) -> Store | None:
    from engine.store import Store, StoreError

    cli = _cli()
    path = config.db_path()
    if not path.exists() and not create:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return Store(path)
    except (StoreError, OSError) as exc:
        cli.fail(f"cannot open the store {path}: {exc}")  # type: ignore[attr-defined]
        raise AssertionError from exc


def _backlog(config_path: Path, *, create: bool = False):  # noqa: ANN202
    from engine.strategy.backlog import Backlog

    cli = _cli()
    config = cli.load_or_exit(config_path, require_file=False)  # type: ignore[attr-defined]
    store = _store(config, create=create)
    if store is None:
        return None
    return Backlog(store, config.discovery.track_weights)


@click.group("priority")
def priority_group() -> None:
    """The persistent backlog and its priority scores (docs/learning.md)."""


@priority_group.command("list")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default="mission-control.toml", show_default=True, help="Path of mission-control.toml.")
@click.option("--all", "show_all", is_flag=True, help="Include done and dropped items.")
def priority_list(config_path: Path, show_all: bool) -> None:
    """Backlog items, highest priority first (score, id, state, track, impact/effort, age)."""
    from rich.table import Table

    backlog = _backlog(config_path)
    rows = [] if backlog is None else backlog.items(None if show_all else
                                                    ("open", "deferred", "in_progress"))
    console = _cli().console()  # type: ignore[attr-defined]
    if not rows:
        console.print("backlog is empty (add items with `mc discover` or `mc priority import FILE`)")
        return
    table = Table("id", "score", "state", "track", "impact", "effort", "age (d)", "title")
    for r in rows:
        pinned = "*" if r["score_override"] is not None else ""
        table.add_row(str(r["id"]), f"{r['effective_score']:.2f}{pinned}", r["state"], r["track"],
                      str(r["impact"]), str(r["effort"]), f"{r['age_days']:g}", r["title"])
    console.print(table)


def _with_item(config_path: Path, action) -> None:  # noqa: ANN001
    from engine.strategy.backlog import BacklogError

    backlog = _backlog(config_path)
    cli = _cli()
    if backlog is None:
        cli.fail("backlog is empty: no store yet", EXIT_FAILED)  # type: ignore[attr-defined]
        return
    with backlog.store:
        try:
            message = action(backlog)
        except BacklogError as exc:
            cli.fail(str(exc), EXIT_FAILED)  # type: ignore[attr-defined]
            return
    cli.console().print(message, highlight=False)  # type: ignore[attr-defined]


_CONFIG = click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                       default="mission-control.toml", show_default=True,
                       help="Path of mission-control.toml.")


@priority_group.command("set")
@_CONFIG
@click.argument("item_id", type=int)
@click.argument("score", type=float)
def priority_set(config_path: Path, item_id: int, score: float) -> None:
    """Pin item ID's score to SCORE (recalc leaves it alone)."""
    def act(b) -> str:  # noqa: ANN001
        b.set_score(item_id, score)
        return f"#{item_id}: score pinned at {score:g}"
    _with_item(config_path, act)


@priority_group.command("defer")
@_CONFIG
@click.argument("item_id", type=int)
def priority_defer(config_path: Path, item_id: int) -> None:
    """Defer item ID (kept, never picked by the strategist until reopened by import)."""
    def act(b) -> str:  # noqa: ANN001
        b.set_state(item_id, "deferred")
        return f"#{item_id}: deferred"
    _with_item(config_path, act)


@priority_group.command("recalc")
@_CONFIG
def priority_recalc(config_path: Path) -> None:
    """Recompute every score with today's ages (pinned scores stay)."""
    _with_item(config_path, lambda b: f"recalculated: {b.recalc()} score(s) changed")


@priority_group.command("import")
@_CONFIG
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def priority_import(config_path: Path, file: Path) -> None:
    """Add or update items from a Markdown backlog (one `- [ ] title | k=v | evidence: ...`
    line per item); a bad line is an error naming it, and nothing is imported."""
    from engine.strategy.backlog import BacklogError, parse_markdown

    cli = _cli()
    text = file.read_text(errors="replace")
    try:
        parse_markdown(text)  # before the store is created
    except BacklogError as exc:
        cli.fail(f"{file}: {exc}")  # type: ignore[attr-defined]
    backlog = _backlog(config_path, create=True)
    assert backlog is not None
    with backlog.store:
        created, updated = backlog.import_markdown(text)
    cli.console().print(f"imported {file}: {created} new, {updated} updated",  # type: ignore[attr-defined]
                        highlight=False)


@priority_group.command("export")
@_CONFIG
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write here instead of stdout.")
@click.option("--all", "show_all", is_flag=True, help="Include done and dropped items.")
def priority_export(config_path: Path, output: Path | None, show_all: bool) -> None:
    """Write the backlog as Markdown (the format `import` reads)."""
    from engine.strategy.backlog import ACTIVE, STATES

    backlog = _backlog(config_path)
    if backlog is None:
        text = "# Backlog\n"
    else:
        with backlog.store:
            text = backlog.export_markdown(STATES if show_all else ACTIVE)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
        _cli().console().print(f"wrote {output}", highlight=False)  # type: ignore[attr-defined]


@click.command("discover")
@_CONFIG
@click.option("--track", "tracks", multiple=True,
              type=click.Choice(["feature", "quality", "security", "tests"]),
              help="Only this track (repeatable; default: [discovery] tracks).")
@click.option("--no-llm", is_flag=True, help="Static signals only (no gap-analysis call).")
@click.option("--research/--no-research", default=None,
              help="Override [discovery] research_enabled.")
def discover_cmd(config_path: Path, tracks: tuple[str, ...], no_llm: bool,
                 research: bool | None) -> None:
    """Find follow-up work (static tools + an LLM gap analysis) and add it to the backlog."""
    import anyio
    from rich.table import Table

    from engine.discovery import discover
    from engine.discovery.plugin import last_failing_tests
    from engine.discovery.run import DiscoveryCallFailed, standalone_ask
    from engine.strategy.backlog import Backlog

    cli = _cli()
    config = cli.load_or_exit(config_path)  # type: ignore[attr-defined]
    repo = Path(config.target.path)
    if not (repo / ".git").exists():
        cli.fail(f"target.path: {repo} is not a git repository")  # type: ignore[attr-defined]
    store = _store(config, create=True)
    assert store is not None
    spent: list[float] = []
    ask = None
    if not no_llm:
        from engine.agents.factory import make_backend

        ask = standalone_ask(config, make_backend(config), repo, spent)
    backlog = Backlog(store, config.discovery.track_weights)
    with store:
        try:
            result = anyio.run(lambda: discover(
                repo, backlog, tracks=list(tracks or config.discovery.tracks),
                objective=config.target.objective, ask=ask,
                research=config.discovery.research_enabled if research is None else research,
                max_items=config.discovery.max_items, failing=last_failing_tests(store)))
        except DiscoveryCallFailed as exc:
            cli.fail(str(exc), EXIT_FAILED)  # type: ignore[attr-defined]
            return
        rows = {r["id"]: r for r in backlog.items(None)}
    console = cli.console()  # type: ignore[attr-defined]
    table = Table("id", "new", "track", "score", "title", "evidence")
    for item_id in result.added + result.merged:
        r = rows[item_id]
        table.add_row(str(item_id), "yes" if item_id in result.added else "known", r["track"],
                      f"{r['score']:.2f}", r["title"], r["evidence"].splitlines()[0][:60])
    if result.added or result.merged:
        console.print(table)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False)
    cost = f", ${sum(spent):.4f}" if spent else ""
    console.print(f"discovery: {len(result.added)} new, {len(result.merged)} already known{cost}",
                  highlight=False)


@click.command("prompts")
@_CONFIG
def prompts_cmd(config_path: Path) -> None:
    """Prompt template variants with their samples and posterior mean success (Thompson
    sampling, docs/learning.md)."""
    from rich.table import Table

    from engine.learning.prompt_evolution import variant_rows

    cli = _cli()
    config = cli.load_or_exit(config_path, require_file=False)  # type: ignore[attr-defined]
    store = _store(config, create=False)
    console = cli.console()  # type: ignore[attr-defined]
    rows = [] if store is None else variant_rows(store)
    if not rows:
        console.print("no prompt variants yet: the shipped templates are used (variants appear "
                      "after the first worker session; add your own with [plugins.prompt_evolution] "
                      "variants_dir)")
        return
    table = Table("id", "role", "variant", "samples", "merged clean", "failed", "posterior mean")
    for r in rows:
        table.add_row(str(r["id"]), r["role"], r["name"], str(r["samples"]), str(r["successes"]),
                      str(r["failures"]), f"{r['posterior_mean']:.3f}")
    console.print(table)


def register(group: click.Group) -> None:
    group.add_command(priority_group)
    group.add_command(discover_cmd)
    group.add_command(prompts_cmd)
