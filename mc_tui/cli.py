"""The ``mc`` command line (click). Commands are registered as their features land."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from engine import __version__
from engine.config import DEFAULT_CONFIG_NAME, ConfigError, MissionConfig, load_config, summary
from engine.config_template import write_template
from engine.store import Store, StoreError
from mc_tui import reports
from mc_tui.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE

def console() -> Console:
    """A console per call, so the terminal width is read when a command runs."""
    return Console()


def err_console() -> Console:
    return Console(stderr=True)

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_CONFIG_NAME,
    show_default=True,
    help="Path of mission-control.toml.",
)


def fail(message: str, code: int = EXIT_USAGE) -> None:
    err_console().print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    sys.exit(code)


def load_or_exit(config_path: Path, *, require_file: bool = True, **overrides: Any) -> MissionConfig:
    try:
        return load_config(config_path, require_file=require_file, overrides=overrides or None)
    except ConfigError as exc:
        fail(str(exc))
        raise AssertionError from exc  # unreachable


def open_store_or_none(config: MissionConfig) -> Store | None:
    """The mission store if one exists (read paths never create it)."""
    path = config.db_path()
    if not path.exists():
        return None
    try:
        return Store(path)
    except StoreError as exc:
        fail(str(exc))
        raise AssertionError from exc


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="mc")
@config_option
@click.pass_context
def cli(ctx: click.Context, config_path: Path) -> None:
    """Mission Control: run a fleet of AI coding agents against one git repository.

    Agents work in isolated worktrees; only verified code reaches the mc/green branch.
    """
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@cli.command("init")
@config_option
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--objective", default="Describe what the agents should achieve", help="Objective to put in the file.")
def init_cmd(config_path: Path, force: bool, objective: str) -> None:
    """Write a commented mission-control.toml with every key at its default."""
    try:
        write_template(config_path, force=force, objective=objective, name=Path.cwd().name)
    except FileExistsError as exc:
        fail(str(exc))
    console().print(f"wrote [bold]{config_path}[/]; check it with `mc validate-config --config {config_path}`")


@cli.command("validate-config")
@config_option
def validate_config_cmd(config_path: Path) -> None:
    """Check a config file (and MC_* env overrides); print a summary or the errors."""
    config = load_or_exit(config_path)
    console().print(f"[bold green]OK[/] {config_path}")
    for key, value in summary(config).items():
        console().print(f"  {key:<13} {value}", highlight=False)


@cli.command("status")
@config_option
def status_cmd(config_path: Path) -> None:
    """The latest mission: state, epochs, units, merge queue and spend."""
    config = load_or_exit(config_path, require_file=False)
    store = open_store_or_none(config)
    if store is None or store.latest_mission() is None:
        console().print("no missions yet")
        return
    with store:
        reports.print_status(console(), store)


@cli.command("history")
@config_option
@click.option("--limit", default=20, show_default=True, help="How many missions to show.")
def history_cmd(config_path: Path, limit: int) -> None:
    """Past missions, newest first."""
    config = load_or_exit(config_path, require_file=False)
    store = open_store_or_none(config)
    if store is None or store.latest_mission() is None:
        console().print("no missions yet")
        return
    with store:
        reports.print_history(console(), store, limit=limit)


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="mc", standalone_mode=True)
    except KeyboardInterrupt:
        err_console().print("interrupted")
        sys.exit(130)


__all__ = ["EXIT_FAILED", "EXIT_OK", "cli", "main"]
