"""The ``mc`` command line (click). Commands are registered as their features land."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from engine import __version__
from engine.config import (
    DEFAULT_CONFIG_NAME,
    ConfigError,
    MissionConfig,
    load_config,
    summary,
    unavailable_notes,
)
from engine.store import Store, StoreError
from mc_tui.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    from rich.console import Console

# Heavy modules (rich, tomlkit, Textual, the controller) are imported inside the commands
# that need them, so `mc` reaches its first frame fast.


def console() -> Console:
    """A console per call, so the terminal width is read when a command runs."""
    from rich.console import Console

    return Console()


def err_console() -> Console:
    from rich.console import Console

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


def store_with_missions(config_path: Path, *, error: bool = False) -> Store | None:
    """The store of this config when it holds a mission; else say "no missions yet"
    (on stdout, exit 0, or as an error with exit 1 when ``error``) and return None."""
    config = load_or_exit(config_path, require_file=False)
    store = open_store_or_none(config)
    if store is not None and store.latest_mission() is not None:
        return store
    where = ("" if config_path.exists() else
             f" ({config_path} does not exist here: pass --config, or run in the project's folder)")
    if error:
        fail(f"no missions yet{where}: start one with `mc` or `mc mission`", EXIT_FAILED)
    console().print(f"no missions yet{where}")
    return None


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="mc")
@config_option
@click.option("--no-ui", is_flag=True, help="Run the mission headless (Rich output) instead of the TUI.")
@click.option("--json", "json_mode", is_flag=True, help="Headless: one JSON event per line.")
@click.option("--yes", "-y", is_flag=True, help="Approve every HITL gate automatically.")
@click.pass_context
def cli(ctx: click.Context, config_path: Path, no_ui: bool, json_mode: bool, yes: bool) -> None:
    """Mission Control: run a fleet of AI coding agents against one git repository.

    Without a command, `mc` runs the mission of ./mission-control.toml in the
    terminal UI (`mc --no-ui`: headless). Agents work in isolated worktrees; only
    verified code reaches the mc/green branch.
    """
    ctx.ensure_object(dict)
    if ctx.invoked_subcommand is None:
        config = load_or_exit(config_path)
        sys.exit(launch_mission(config, ui=not (no_ui or json_mode), json_mode=json_mode, yes=yes))


def launch_mission(
    config: MissionConfig,
    *,
    ui: bool,
    json_mode: bool = False,
    yes: bool = False,
    chain: bool = False,
    resume: bool = False,
    after: Any = None,
) -> int:
    """Run a mission in the TUI or headless; returns the exit code."""
    import anyio

    from engine.controller import Controller, MissionSetupError, run_mission
    from engine.gitops import GitError, GitRepo

    try:  # before anything is written: the store lives inside the target's git dir
        GitRepo(config.target.path)
    except GitError as exc:
        fail(f"target.path: {exc}")
    try:
        store = Store(config.db_path())
    except StoreError as exc:
        fail(str(exc))
    if config.agent.permission_mode == "bypassPermissions":
        err_console().print(
            "[bold red]agent.permission_mode = bypassPermissions: agents run with NO permission "
            "checks[/] (any file, any command, .git included). You opted in; remove the key for "
            "the default profile.", highlight=False)
    controller = Controller(config, store, auto_approve=yes, chain=chain, resume=resume)
    first_event = store.last_event_id()
    try:
        controller.prepare()  # fail fast (no repo, missing agent CLI, busy mission) before any UI
    except MissionSetupError as exc:
        store.close()
        fail(str(exc))

    async def engine() -> Any:
        return await run_mission(controller)

    try:
        if ui:
            from mc_tui.app import run_tui

            async def engine_code() -> int:
                return (await engine()).exit_code

            # A chained mission gets a new id: then the app follows the newest mission.
            code = run_tui(store, config=config, engine=engine_code,
                           mission_id=None if chain else controller.mission_id)
            if controller.mission_id is not None and code != EXIT_INTERRUPTED:
                _reports().print_summary(console(), store, None if chain else controller.mission_id)
        else:
            from mc_tui.headless import run_headless

            try:
                code = anyio.run(lambda: run_headless(
                    store, config, engine, json_mode=json_mode, after_id=first_event,
                    resume_hint=f"mc mission --resume --config {config.source_path}"))
            except KeyboardInterrupt:
                code = EXIT_INTERRUPTED
        if after is not None:
            after()
        return code
    finally:
        store.close()


@cli.command("init")
@config_option
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--objective", default="Describe what the agents should achieve", help="Objective to put in the file.")
def init_cmd(config_path: Path, force: bool, objective: str) -> None:
    """Write a commented mission-control.toml with every key at its default."""
    from engine.config_template import write_template

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
    repo_note = check_target_repo(config)
    console().print(f"[bold green]OK[/] {config_path}")
    for key, value in summary(config).items():
        console().print(f"  {key:<13} {value}", highlight=False)
    for note in unavailable_notes(config) + repo_note:
        console().print(f"  [yellow]note[/]          {note}", highlight=False)


def check_target_repo(config: MissionConfig) -> list[str]:
    """Resolve the base branch of the target repository into ``config`` and run the
    repository preflight (exit 2 with the reason when either fails); returns notes. A
    target that is not a repository yet is only a note."""
    from engine.gitops import GitError, GitRepo
    from engine.gitops.branches import apply_base_branch
    from engine.gitops.preflight import preflight

    try:
        repo = GitRepo(config.target.path)
    except GitError as exc:
        if "is not a git repository" in str(exc) or "does not exist" in str(exc):
            return [f"target.path: {exc} (checked again when a mission starts)"]
        fail(f"target.path: {exc}")
        raise AssertionError from exc  # unreachable
    try:
        base = apply_base_branch(config, repo)
        notes = preflight(repo, config.worktree.include, f"refs/heads/{base.name}")
    except GitError as exc:
        fail(str(exc))
        raise AssertionError from exc  # unreachable
    if base.source != "target.branch":
        notes.insert(0, f"target.branch: {base.name} ({base.source})")
    return notes


@cli.command("status")
@config_option
def status_cmd(config_path: Path) -> None:
    """The latest mission: state, epochs, units, merge queue and spend."""
    store = store_with_missions(config_path)
    if store is None:
        return
    with store:
        _reports().print_status(console(), store, config_path=str(config_path))


@cli.command("doctor")
@config_option
def doctor_cmd(config_path: Path) -> None:
    """Check the repo, the worktree pool and the agent CLI (no model call, nothing spent)."""
    from rich.markup import escape
    from rich.table import Table

    from engine.doctor import MISSING, OK, run_checks

    config = load_or_exit(config_path, require_file=False)
    checks = run_checks(config)
    table = Table(title=f"mc doctor ({config.agent.backend} backend)", title_justify="left")
    for col in ("check", "status", "detail", "fix"):
        table.add_column(col, overflow="fold")
    styles = {OK: "green", MISSING: "bold red"}
    for c in checks:
        status = c.status if c.required or c.status != MISSING else "missing (optional)"
        table.add_row(c.name, f"[{styles.get(c.status, 'yellow')}]{status}[/]",
                      escape(c.detail), "" if c.status == OK else escape(c.fix))
    console().print(table)
    failed = [c for c in checks if c.failed]
    if failed:
        err_console().print(f"{len(failed)} required check(s) failed: "
                            + ", ".join(c.name for c in failed), highlight=False, markup=False)
        sys.exit(1)


@cli.command("history")
@config_option
@click.option("--limit", default=20, show_default=True, help="How many missions to show.")
def history_cmd(config_path: Path, limit: int) -> None:
    """Past missions, newest first."""
    store = store_with_missions(config_path)
    if store is None:
        return
    with store:
        _reports().print_history(console(), store, limit=limit)


@cli.command("mission")
@config_option
@click.option("--workers", "-w", type=click.IntRange(1, 64), help="Override scheduler.parallel.num_workers.")
@click.option("--objective", help="Override target.objective.")
@click.option("--chain", is_flag=True, help="When done, start the strategist's next objective.")
@click.option("--resume", is_flag=True, help="Continue the interrupted mission of this store.")
@click.option("--no-ui", is_flag=True, help="Headless: Rich output instead of the TUI.")
@click.option("--json", "json_mode", is_flag=True, help="Headless: one JSON event per line.")
@click.option("--yes", "-y", is_flag=True, help="Approve every HITL gate automatically.")
def mission_cmd(
    config_path: Path, workers: int | None, objective: str | None, chain: bool, resume: bool,
    no_ui: bool, json_mode: bool, yes: bool,
) -> None:
    """Run a mission: plan, dispatch agents, review, merge, verify, promote."""
    overrides: dict[str, Any] = {}
    if workers:
        overrides["scheduler"] = {"parallel": {"num_workers": workers}}
    if objective:
        overrides["target"] = {"objective": objective}
    config = load_or_exit(config_path, **overrides)
    sys.exit(launch_mission(config, ui=not (no_ui or json_mode), json_mode=json_mode, yes=yes,
                            chain=chain, resume=resume))


@cli.command("demo")
@click.option("--dir", "demo_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to create the demo (default: a new temp folder).")
@click.option("--no-ui", is_flag=True, help="Headless: Rich output instead of the TUI.")
@click.option("--json", "json_mode", is_flag=True, help="Headless: one JSON event per line.")
@click.option("--yes", "-y", is_flag=True, help="Approve the push gate automatically.")
@click.option("--workers", "-w", type=click.IntRange(1, 16), default=3, show_default=True)
def demo_cmd(demo_dir: Path | None, no_ui: bool, json_mode: bool, yes: bool, workers: int) -> None:
    """Run the whole pipeline on a bundled example repo with scripted agents (no API key)."""
    from engine.demo import DemoError, prepare_demo

    try:
        config_path = prepare_demo(demo_dir)
    except DemoError as exc:
        fail(str(exc))
        return
    config = load_or_exit(config_path, scheduler={"parallel": {"num_workers": workers}})
    repo = config.target.path

    def where() -> None:
        console().print(
            f"\ndemo repo: [bold]{repo}[/]  (try: git -C {repo} log --oneline --graph mc/green)\n"
            f"config:    {config_path}   status: mc status --config {config_path}",
            highlight=False,
        )

    if not json_mode:
        console().print(f"demo prepared in {config_path.parent}", highlight=False)
    sys.exit(launch_mission(config, ui=not (no_ui or json_mode), json_mode=json_mode, yes=yes,
                            after=where))


@cli.command("summary")
@config_option
@click.option("--mission", "mission_id", type=int, help="Mission id (default: the latest).")
def summary_cmd(config_path: Path, mission_id: int | None) -> None:
    """Units, merges, verifications and cost per model of a mission."""
    store = store_with_missions(config_path)
    if store is None:
        return
    with store:
        _reports().print_summary(console(), store, mission_id)


@cli.command("report")
@config_option
@click.option("--mission", "mission_id", type=int, help="Mission id (default: the latest).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write here (default: mc-report-<id>.json in the state dir).")
def report_cmd(config_path: Path, mission_id: int | None, output: Path | None) -> None:
    """Write the post-mission JSON report (objective, outcome, units, merges, cost, timings)."""
    import json

    from engine.report import build_report

    config = load_or_exit(config_path, require_file=False)
    store = open_store_or_none(config)
    if store is None or store.latest_mission() is None:
        fail("no missions yet", EXIT_FAILED)
        return
    with store:
        mission = store.get("missions", mission_id) if mission_id else store.latest_mission()
        if mission is None:
            fail(f"mission {mission_id} does not exist")
            return
        report = build_report(store, mission["id"])
    output = output or config.state_dir() / f"mc-report-{mission['id']}.json"
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2, default=str))
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror}")
    console().print(f"wrote {output}", highlight=False)
    _reports().print_attribution(console(), report["attribution"])


@cli.command("dashboard")
@config_option
@click.option("--mission", "mission_id", type=int, help="Mission id (default: the newest).")
@click.option("--project", help="A registered project (`mc projects`) instead of --config.")
def dashboard_cmd(config_path: Path, mission_id: int | None, project: str | None) -> None:
    """Attach the TUI to a mission running in another process (or a finished one).

    Read-only, except approvals and pause / resume / stop requests, which the running
    engine obeys. The palette's "Projects: switch" attaches to another registered project.
    """
    if project is not None:
        from engine.registry import Registry, RegistryError

        try:
            config_path = Registry().get(project).config_path
        except RegistryError as exc:
            fail(str(exc), _registry_exit(exc))
    config = load_or_exit(config_path, require_file=False)
    store = open_store_or_none(config)
    if store is None or store.latest_mission() is None:
        fail("no missions yet: start one with `mc` or `mc mission`", EXIT_FAILED)
        return
    if mission_id is not None and store.get("missions", mission_id) is None:
        fail(f"mission {mission_id} does not exist")
    from mc_tui.screens.projects import run_dashboard

    sys.exit(run_dashboard(store, config=config, mission_id=mission_id))


def _decide(config_path: Path, approval_id: int, approved: bool) -> None:
    config = load_or_exit(config_path, require_file=False)
    store = open_store_or_none(config)
    if store is None:
        fail("no mission store here yet")
        return
    with store:
        row = store.get("approvals", approval_id)
        if row is None:
            fail(f"approval {approval_id} does not exist")
            return
        if not store.decide_approval(approval_id, approved, by="cli"):
            fail(f"approval {approval_id} was already decided: {row['status']}", EXIT_FAILED)
            return
    console().print(f"approval {approval_id} ({row['gate']}: {row['title']}): "
                    f"{'approved' if approved else 'denied'}", highlight=False)


@cli.command("approve")
@config_option
@click.argument("approval_id", type=int)
def approve_cmd(config_path: Path, approval_id: int) -> None:
    """Approve a pending HITL gate."""
    _decide(config_path, approval_id, True)


@cli.command("deny")
@config_option
@click.argument("approval_id", type=int)
def deny_cmd(config_path: Path, approval_id: int) -> None:
    """Deny a pending HITL gate."""
    _decide(config_path, approval_id, False)


@cli.command("a2a")
@config_option
@click.option("--host", help="Bind address (default: a2a.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: a2a.port).")
@click.option("--public-url", help="Base URL clients reach the server at, announced in the agent "
              "card (default: http://HOST:PORT), e.g. behind a TLS proxy.")
def a2a_cmd(config_path: Path, host: str | None, port: int | None, public_url: str | None) -> None:
    """Serve missions over A2A (agent-to-agent): an agent card and the skills
    "run a mission" (a task that follows its mission) and "mission status".

    Serves the registered projects (`mc register`) and the project of --config, whose
    `[a2a]` section configures the server: it needs `enabled = true`. Loopback only unless
    a bearer token is set in the environment variable named by `a2a.token_env` (default
    MC_A2A_TOKEN).
    """
    import os

    from rich.markup import escape

    from engine.registry import Registry, RegistryError, default_name
    from engine.services.a2a.projects import Project, Projects
    from engine.services.a2a.server import BindRefused, ServerSettings, check_bind, serve
    from engine.services.a2a.tasks import TaskMap

    config = load_or_exit(config_path)
    if not config.a2a.enabled:
        fail(escape(f"the A2A server is off for {config_path}: set `[a2a] enabled = true` there "
                    "(or the environment variable MC_A2A__ENABLED=true), then run `mc a2a` again"))
    token = os.environ.get(config.a2a.token_env) or None
    settings = ServerSettings(host or config.a2a.host, port or config.a2a.port, token,
                              config.a2a.token_env, public_url)
    try:
        check_bind(settings.host, settings.token, settings.token_env)
    except BindRefused as exc:
        fail(escape(str(exc)))
    registry = Registry()
    try:
        registered = registry.find_by_config(config_path)
    except RegistryError:
        registered = None
    name = registered.name if registered else default_name(config)
    projects = Projects(registry=registry, default=Project(name, config_path.resolve()))
    console().print(
        f"A2A server on {settings.url}  card: {settings.url}/.well-known/agent-card.json  "
        f"projects: {', '.join(projects.names())}  "
        f"token: {'required (' + settings.token_env + ')' if token else 'none (loopback only)'}",
        highlight=False)
    serve(settings, projects, TaskMap())


@cli.command("register")
@config_option
@click.option("--name", help="Project name (default: target.name, else the config's folder).")
def register_cmd(config_path: Path, name: str | None) -> None:
    """Add this project to the registry that `mc mcp` and the other services serve."""
    from engine.registry import Registry, RegistryError

    try:
        project = Registry().register(config_path, name)
    except ConfigError as exc:
        fail(str(exc))
        return
    except RegistryError as exc:
        fail(str(exc), _registry_exit(exc))
        return
    console().print(f"registered [bold]{project.name}[/]: {project.config_path} "
                    f"(store {project.store_path})", highlight=False)


@cli.command("unregister")
@click.argument("name")
def unregister_cmd(name: str) -> None:
    """Remove a project from the registry (its repository and store are untouched)."""
    from engine.registry import Registry, RegistryError

    try:
        project = Registry().unregister(name)
    except RegistryError as exc:
        fail(str(exc), _registry_exit(exc))
        return
    console().print(f"unregistered {project.name} ({project.config_path})", highlight=False)


@cli.command("projects")
def projects_cmd() -> None:
    """The registered projects: name, path, config, last mission, its status, updated."""
    from engine.registry import Registry, RegistryError

    try:
        registry = Registry()
        projects = registry.projects()
    except RegistryError as exc:
        fail(str(exc), EXIT_FAILED)
        return
    if not projects:
        console().print(f"no project registered yet ({registry.path}): "
                        "add one with `mc register --config PATH`", highlight=False)
        return
    _reports().print_projects(console(), projects)


@cli.command("mcp")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Default project: this config's (registered or not). Default: the only "
                   "registered project.")
@click.option("--http", "use_http", is_flag=True, help="Streamable HTTP instead of stdio.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="HTTP bind address; non-loopback needs a token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8766, show_default=True,
              help="HTTP port (0: any free port).")
@click.option("--token-env", metavar="NAME",
              help="Environment variable holding the bearer token "
                   "(default: MC_MCP_TOKEN, else MC_SERVICES_TOKEN).")
def mcp_cmd(config_path: Path | None, use_http: bool, host: str, port: int,
            token_env: str | None) -> None:
    """Serve the registered projects over the Model Context Protocol (stdio, or HTTP)."""
    import anyio

    from engine.registry import Registry, RegistryError, project_of_config
    from engine.services.mcp import ProjectStores
    from engine.services.mcp.http import (
        TOKEN_ENVS,
        BindRefused,
        check_bind,
        serve_http,
        token_from_env,
    )
    from engine.services.mcp.server import build_server

    registry = Registry()
    default = None
    if config_path is not None:
        try:
            default = registry.find_by_config(config_path) if config_path.exists() else None
            default = default or project_of_config(config_path)
        except ConfigError as exc:
            fail(str(exc))
        except RegistryError as exc:
            fail(str(exc), _registry_exit(exc))
    names = (token_env,) if token_env else TOKEN_ENVS
    stores = ProjectStores(registry, default, private_env=names)
    server = build_server(stores)
    try:
        if not use_http:
            anyio.run(server.run_stdio_async)
            return
        token, source = token_from_env(names)
        try:
            check_bind(host, token, names)
        except BindRefused as exc:
            fail(str(exc))
        auth = f"bearer token from ${source}" if token else "no token (loopback only)"
        anyio.run(lambda: serve_http(server, host=host, port=port, token=token, ready=lambda url:
                  err_console().print(f"mc mcp: serving {url} ({auth})", highlight=False)))
    except KeyboardInterrupt:
        pass
    finally:
        stores.close()


def _registry_exit(exc: Exception) -> int:
    """Bad input (unknown or duplicate name) exits 2; a registry that cannot be read exits 1."""
    from engine.registry import DuplicateProject, UnknownProject

    return EXIT_USAGE if isinstance(exc, DuplicateProject | UnknownProject) else EXIT_FAILED


@cli.command("live")
@config_option
@click.option("--host", help="Bind address (default: live.host, 127.0.0.1). Anything but "
              "loopback needs the token from $MC_SERVICES_TOKEN (live.token_env).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: live.port, 8780).")
def live_cmd(config_path: Path, host: str | None, port: int | None) -> None:
    """The web dashboard: every registered project's mission, live, in a browser.

    Plan tree, workers and their logs, merge queue, approvals (approve / deny), cost against
    the budget and the event log, following missions that run in other processes.
    """
    from engine.services.live.projects import ProjectSource
    from engine.services.live.server import LiveServerError, bind_token, serve

    config = load_or_exit(config_path, require_file=False)
    host = host or config.live.host
    port = config.live.port if port is None else port
    try:
        bind_token(host, config.live.token_env)
        source = ProjectSource(config_path if config_path.exists() else None)
    except (LiveServerError, ConfigError) as exc:
        fail(str(exc))
        return
    names = ", ".join(p.name for p in source.projects()) or "none yet (mc register --config PATH)"
    shown = f"[{host}]" if ":" in host else host
    console().print(f"mc live on http://{shown}:{port}/  projects: {names}  (Ctrl-C stops)",
                    highlight=False)
    serve(source, host=host, port=port, token_env=config.live.token_env)


@cli.group("memory")
def memory_group() -> None:
    """Episodic memory: what earlier units and missions taught (docs/learning.md)."""


def _memory_store(config_path: Path) -> tuple[MissionConfig, Store | None]:
    config = load_or_exit(config_path, require_file=False)
    return config, open_store_or_none(config)


def _print_episodes(rows: list[tuple[dict[str, Any], str]]) -> None:
    from rich.markup import escape

    out = console()
    if not rows:
        out.print("no episodes")
        return
    for row, extra in rows:
        out.print(f"[bold]{escape(row['id'])}[/] mission {row['mission_id']} "
                  f"${float(row['cost_usd'] or 0):.2f}{extra}", highlight=False)
        out.print(f"  {escape(row['lesson'])}", highlight=False)


@memory_group.command("list")
@config_option
@click.option("--limit", default=50, show_default=True, help="How many episodes to show.")
def memory_list_cmd(config_path: Path, limit: int) -> None:
    """Stored episodes, newest first."""
    from engine.learning import episodes

    _, store = _memory_store(config_path)
    if store is None:
        console().print("no episodes")
        return
    with store:
        _print_episodes([(row, "") for row in episodes.list_episodes(store, limit)])


@memory_group.command("search")
@config_option
@click.argument("query")
@click.option("--threshold", type=click.FloatRange(0, 1),
              help="Minimum score (default: [episodic_memory] similarity_threshold).")
def memory_search_cmd(config_path: Path, query: str, threshold: float | None) -> None:
    """Episodes relevant to QUERY, best first, as the planner and workers recall them."""
    from engine.learning import episodes

    config, store = _memory_store(config_path)
    if store is None:
        console().print("no episodes")
        return
    memory = config.episodic_memory
    with store:
        found = episodes.recall(
            store, query, half_life_days=memory.half_life_days,
            threshold=memory.similarity_threshold if threshold is None else threshold)
        _print_episodes([(r.episode, f" relevance {r.relevance:.2f} score {r.score:.2f}")
                         for r in found])


@memory_group.command("forget")
@config_option
@click.argument("episode_id", required=False)
@click.option("--all", "forget_all", is_flag=True, help="Forget every episode.")
def memory_forget_cmd(config_path: Path, episode_id: str | None, forget_all: bool) -> None:
    """Delete the episode EPISODE_ID (as `mc memory list` shows it), or all with --all."""
    from engine.learning import episodes

    if forget_all == (episode_id is not None):
        fail("give an episode id or --all (not both)")
    _, store = _memory_store(config_path)
    gone = 0
    if store is not None:
        with store:
            gone = episodes.forget(store, None if forget_all else episode_id)
    if episode_id is not None and gone == 0:
        fail(f"no episode {episode_id!r} (see `mc memory list`)", EXIT_FAILED)
    console().print(f"forgot {gone} episode(s)")


def _register_learning() -> None:
    from mc_tui.cli_strategy import register

    register(cli)


_register_learning()


def _reports() -> Any:
    from mc_tui import reports

    return reports


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="mc", standalone_mode=True)
    except KeyboardInterrupt:
        err_console().print("interrupted")
        sys.exit(130)


__all__ = ["EXIT_FAILED", "EXIT_OK", "cli", "main"]
