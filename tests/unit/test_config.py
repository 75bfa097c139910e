"""Config: every section, env overrides, each error kind, init round trip, paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import ConfigError, MissionConfig, load_config
from engine.config_template import render_template, write_template

SECTIONS = {
    "target": ["name", "path", "branch", "objective", "verification"],
    "target.verification": ["command", "timeout"],
    "worktree": ["include"],
    "scheduler": ["model", "session_timeout", "budget", "parallel"],
    "scheduler.budget": ["max_per_session_usd", "max_per_run_usd"],
    "scheduler.parallel": ["num_workers", "pool_dir"],
    "rounds": ["max_rounds", "stall_threshold"],
    "planner": ["max_depth", "max_children_per_node"],
    "continuous": [
        "max_wall_time_seconds", "min_ambition_score", "max_replan_attempts",
        "verify_objective_completion", "max_objective_checks",
    ],
    "review": ["gate_completion", "min_review_score"],
    "green_branch": ["auto_push", "push_branch", "fixup_max_attempts", "fixup_candidates"],
    "discovery": ["enabled", "tracks", "research_enabled"],
    "models": ["planner", "reviewer", "strategist"],
    "hitl": ["enabled", "gates", "poll_timeout", "telegram"],
    "speculation": ["enabled", "branch_count", "selection", "units"],
    "degradation": ["enabled", "failure_threshold", "reset_timeout", "fallback_strategy"],
    "episodic_memory": ["enabled", "max_episodes", "similarity_threshold"],
    "a2a": ["enabled", "host", "port", "token_env"],
    "tracing": ["enabled", "endpoint", "service_name"],
}

FULL = """
[target]
name = "calc"
path = "repo"
branch = "trunk"
objective = "add tests"
[target.verification]
command = "pytest -q && ruff check ."
timeout = 120
[scheduler]
model = "opus"
session_timeout = 900
[scheduler.budget]
max_per_session_usd = 2.5
max_per_run_usd = 20
[scheduler.parallel]
num_workers = 3
pool_dir = "~/mc-pool"
[rounds]
max_rounds = 4
stall_threshold = 2
[planner]
max_depth = 3
max_children_per_node = 6
[continuous]
max_wall_time_seconds = 600
min_ambition_score = 5
max_replan_attempts = 1
verify_objective_completion = false
max_objective_checks = 2
[review]
gate_completion = false
min_review_score = 7
[green_branch]
auto_push = true
push_branch = "develop"
fixup_max_attempts = 1
fixup_candidates = 2
[discovery]
enabled = true
tracks = ["tests"]
research_enabled = true
[models]
planner = "p"
reviewer = "r"
strategist = "s"
[hitl]
enabled = true
gates = ["push", "large_merge"]
poll_timeout = 30
[hitl.telegram]
enabled = false
chat_id = "42"
[speculation]
enabled = true
branch_count = 3
selection = "review"
[degradation]
enabled = false
failure_threshold = 5
reset_timeout = 10
fallback_strategy = "pause"
[episodic_memory]
enabled = false
max_episodes = 10
similarity_threshold = 0.5
[a2a]
enabled = true
host = "127.0.0.1"
port = 9999
[tracing]
enabled = true
endpoint = "http://127.0.0.1:4317"
service_name = "mc-test"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mission-control.toml"
    path.write_text(text)
    return path


def test_every_design_section_and_key_exists() -> None:
    for section, keys in SECTIONS.items():
        model: type = MissionConfig
        for part in section.split("."):
            model = model.model_fields[part].annotation  # type: ignore[assignment]
        for key in keys:
            assert key in model.model_fields, f"{section}.{key} missing"


def test_full_file_loads_every_value(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, FULL))
    assert cfg.target.path == (tmp_path / "repo").resolve()
    assert cfg.target.branch == "trunk"
    assert cfg.target.verification.timeout == 120
    assert cfg.scheduler.budget.max_per_run_usd == 20
    assert cfg.scheduler.parallel.pool_dir == (Path.home() / "mc-pool").resolve()
    assert cfg.planner.max_children_per_node == 6
    assert cfg.continuous.verify_objective_completion is False
    assert cfg.green_branch.push_branch == "develop"
    assert cfg.hitl.gates == ["push", "large_merge"]
    assert cfg.hitl.telegram.chat_id == "42"
    assert cfg.speculation.selection == "review"
    assert cfg.degradation.fallback_strategy == "pause"
    assert cfg.a2a.port == 9999
    assert cfg.tracing.service_name == "mc-test"


def test_env_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MC_SCHEDULER__PARALLEL__NUM_WORKERS", "7")
    monkeypatch.setenv("MC_TARGET__VERIFICATION__COMMAND", "make test")
    monkeypatch.setenv("MC_HITL__GATES", '["push"]')
    cfg = load_config(write(tmp_path, FULL))
    assert cfg.scheduler.parallel.num_workers == 7  # file says 3
    assert cfg.target.verification.command == "make test"
    assert cfg.hitl.gates == ["push"]
    assert cfg.target.name == "calc"  # untouched keys still come from the file


def test_unknown_env_key_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MC_SCHEDULER__PARALEL__NUM_WORKERS", "7")
    with pytest.raises(ConfigError, match="did you mean 'parallel'"):
        load_config(write(tmp_path, FULL))


def test_bad_env_value_names_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MC_SCHEDULER__PARALLEL__NUM_WORKERS", "many")
    with pytest.raises(ConfigError, match=r"scheduler\.parallel\.num_workers"):
        load_config(write(tmp_path, FULL))


def test_unknown_key_did_you_mean(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "[scheduler.parallel]\nnum_workrs = 3\n"))
    assert "scheduler.parallel.num_workrs: unknown key (did you mean 'num_workers'?)" in str(err.value)


def test_unknown_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"schedular: unknown key \(did you mean 'scheduler'\?\)"):
        load_config(write(tmp_path, "[schedular]\nmodel = 'x'\n"))


def test_wrong_type_names_key_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "[scheduler.budget]\nmax_per_run_usd = 'lots'\n"))
    assert "scheduler.budget.max_per_run_usd" in str(err.value)


def test_constraint_violation(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"scheduler\.budget\.max_per_run_usd: Input should be greater than 0"):
        load_config(write(tmp_path, "[scheduler.budget]\nmax_per_run_usd = -1\n"))


def test_invalid_toml_has_line_number(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"invalid TOML: .*line 3"):
        load_config(write(tmp_path, "[target]\nname = 'x'\npath = \n"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_missing_file_allowed_gives_defaults(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "nope.toml", require_file=False)
    assert cfg.scheduler.parallel.num_workers == 4
    assert cfg.source_path is None


def test_relative_paths_resolve_against_file_folder(tmp_path: Path) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    cfg = load_config(write(sub, '[target]\npath = "../repo"\n[state]\ndir = "state"\n'))
    assert cfg.target.path == (tmp_path / "repo").resolve()
    assert cfg.state_dir() == (sub / "state").resolve()


def test_default_state_dir_is_inside_git_dir(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    cfg = load_config(write(tmp_path, '[target]\npath = "."\n'))
    assert cfg.state_dir() == tmp_path.resolve() / ".git" / "mc"
    assert cfg.db_path().name == "mission.db"
    assert cfg.legacy_pool_dir() == tmp_path.resolve() / ".git" / "mc" / "pool"
    assert ".git" not in cfg.pool_dir().parts  # Claude Code refuses edits under .git


def test_default_pool_is_in_the_user_cache_keyed_by_the_repo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    pools = []
    for clone in ("a/proj", "b/proj"):  # two clones of one project never share slots
        (tmp_path / clone / ".git").mkdir(parents=True)
        cfg = load_config(write(tmp_path / clone, '[target]\npath = "."\n'))
        pools.append(cfg.pool_dir())
        assert cfg.pool_dir().parent == tmp_path / "cache" / "mission-control" / "pools"
        assert cfg.pool_dir().name.startswith("proj-")
    assert pools[0] != pools[1]
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert load_config(write(tmp_path / "a/proj", '[target]\npath = "."\n')).pool_dir().parent \
        == tmp_path / "home" / ".cache" / "mission-control" / "pools"


def test_state_dir_outside_git_keeps_the_pool_next_to_the_store(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    cfg = load_config(write(tmp_path, '[state]\ndir = "mcstate"\n'))
    assert cfg.pool_dir() == (tmp_path / "mcstate" / "pool").resolve()


def test_a_pool_inside_git_is_a_config_error_for_claude(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    text = '[scheduler.parallel]\npool_dir = ".git/mc/pool"\n'
    with pytest.raises(ConfigError, match=r"scheduler\.parallel\.pool_dir: .* inside a \.git "
                                          r"directory, where Claude Code refuses every edit"):
        load_config(write(tmp_path, text))
    load_config(write(tmp_path, text + '[agent]\nbackend = "scripted"\n'))  # no such rule there
    opted = load_config(write(tmp_path, text + '[agent]\npermission_mode = "bypassPermissions"\n'))
    assert opted.pool_dir() == (tmp_path / ".git" / "mc" / "pool").resolve()


def test_overrides_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MC_SCHEDULER__PARALLEL__NUM_WORKERS", "7")
    cfg = load_config(write(tmp_path, FULL), overrides={"scheduler": {"parallel": {"num_workers": 2}}})
    assert cfg.scheduler.parallel.num_workers == 2
    assert cfg.target.path == (tmp_path / "repo").resolve()


def test_template_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "mission-control.toml"
    write_template(path, objective="make it fast")
    cfg = load_config(path)
    assert cfg.target.objective == "make it fast"
    defaults = MissionConfig()
    assert cfg.scheduler.model_dump() == defaults.scheduler.model_dump()
    assert cfg.hitl.model_dump() == defaults.hitl.model_dump()
    text = path.read_text()
    for section in SECTIONS:
        assert f"[{section}]" in text


def test_template_refuses_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "mission-control.toml"
    path.write_text("keep me")
    with pytest.raises(FileExistsError):
        write_template(path)
    assert path.read_text() == "keep me"
    write_template(path, force=True)
    assert "[target]" in path.read_text()


def test_template_comments_every_section() -> None:
    text = render_template()
    assert text.count("#") > 40


def test_docs_config_md_is_current() -> None:
    from engine.config_docs import render_reference

    docs = Path(__file__).resolve().parents[2] / "docs" / "config.md"
    assert docs.read_text() == render_reference(), (
        "docs/config.md is stale: run `uv run python -m engine.config_docs > docs/config.md`"
    )


def test_unavailable_features_are_reported(tmp_path: Path) -> None:
    from engine.config import unavailable_notes

    # speculation branching exists (engine/speculation.py): no longer a note
    cfg = load_config(write(tmp_path, "[speculation]\nenabled = true\n"))
    assert unavailable_notes(cfg) == []
    # auto-discovery exists (`mc discover`, the backlog plugin): no longer a note
    assert unavailable_notes(load_config(write(tmp_path, "[discovery]\nenabled = true\n"))) == []
    # the A2A server exists (`mc a2a`): switching it on is no longer a note
    assert unavailable_notes(load_config(write(tmp_path, "[a2a]\nenabled = true\n"))) == []
    assert unavailable_notes(load_config(write(tmp_path, ""))) == []


def test_an_echoed_input_never_shows_a_urls_userinfo(tmp_path: Path) -> None:
    """A host entry with a bad kind is echoed whole in the error: its remote's token is not."""
    path = write(tmp_path, '[target]\nname = "x"\n[[hosts]]\nkind = "rayy"\n'
                           'remote = "https://alice:s3cr3tPW@git.example.com/app.git"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "hosts.0" in str(err.value) and "s3cr3tPW" not in str(err.value)
    assert "https://***@git.example.com/app.git" in str(err.value)


def test_a_non_json_env_value_for_a_list_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It was a pydantic-settings traceback (exit 1); now a ConfigError (exit 2) saying how."""
    monkeypatch.setenv("MC_HITL__GATES", "push")
    path = write(tmp_path, '[target]\nname = "x"\n')
    with pytest.raises(ConfigError, match="must hold JSON"):
        load_config(path)


SECRET_REMOTES = [
    "https://ghp_T0kenXYZ123@github.com/o/r.git",  # a token as the user part
    "https://alice:T0kenXYZ123@git.example.com/o/r.git",
    "http://T0kenXYZ123@git.example.com/o/r.git",
    "ssh://git:T0kenXYZ123@git.example.com/o/r.git",  # a password, whatever the scheme
]


@pytest.mark.parametrize("url", SECRET_REMOTES)
@pytest.mark.parametrize("where", ["green_branch", "hosts", "env"])
def test_a_git_remote_url_with_a_credential_is_refused_without_echoing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, where: str,
) -> None:
    """It was only redacted when echoed; now loading fails naming the key, secret unsaid."""
    text, key = {
        "green_branch": (f'[green_branch]\nremote = "{url}"\n', "green_branch.remote"),
        "hosts": (f'[[hosts]]\nkind = "ray"\nremote = "{url}"\n', "hosts.0.ray.remote"),
        "env": ('[target]\nname = "x"\n', "green_branch.remote"),
    }[where]
    if where == "env":
        monkeypatch.setenv("MC_GREEN_BRANCH__REMOTE", url)
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    message = str(err.value)
    assert f"{key}: " in message and "T0kenXYZ123" not in message
    assert "secrets come from the environment" in message
    assert "credential helper" in message and "GIT_ASKPASS" in message


def test_mc_refuses_a_remote_with_a_token_with_exit_2_and_never_prints_it(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from mc_tui.cli import cli

    path = write(tmp_path, '[green_branch]\nremote = "https://ghp_T0kenXYZ123@github.com/o/r.git"\n')
    result = CliRunner().invoke(cli, ["validate-config", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert "green_branch.remote" in result.output and "T0kenXYZ123" not in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("url", [
    "origin", "git@github.com:o/r.git", "ssh://git@github.com/o/r.git",
    "https://github.com/o/r.git", "/srv/git/r.git", "file:///srv/git/r.git",
])
def test_git_remotes_without_a_secret_stay_allowed(tmp_path: Path, url: str) -> None:
    cfg = load_config(write(tmp_path, f'[green_branch]\nremote = "{url}"\n'
                                      f'[[hosts]]\nkind = "ray"\nremote = "{url}"\n'))
    assert cfg.green_branch.remote == url and cfg.hosts[0].remote == url  # type: ignore[union-attr]


def test_an_unknown_host_kind_lists_only_the_kinds_that_work(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, '[[hosts]]\nkind = "rayy"\n'))
    (line,) = [ln for ln in str(err.value).splitlines() if "hosts.0" in ln]
    assert "kind must be one of: local, sandbox, ssh, ray" in line and "container" not in line
    with pytest.raises(ConfigError) as err:  # container keeps its own reason
        load_config(write(tmp_path, '[[hosts]]\nkind = "container"\n'))
    assert "hosts.0.container.kind" in str(err.value)
    assert "not available in this version" in str(err.value)


def test_the_summary_shows_speculation_merge_queue_and_hosts(tmp_path: Path) -> None:
    from engine.config import summary

    plain = summary(load_config(write(tmp_path, "")))
    assert plain["speculation"] == "off (one agent per unit)"
    assert plain["merge queue"] == "batches of 4, 1 speculative batch ahead, 2 verify slots"
    assert plain["hosts"] == "none (local processes, 4 slots)"
    assert plain["precheck"] == "each unit, in its worktree, unless the merge queue is idle"
    cfg = load_config(write(tmp_path, """
[target.verification]
precheck = false
[speculation]
enabled = true
branch_count = 3
units = "all"
selection = "review"
[merge_queue]
batch_size = 2
speculative_depth = 0
[[hosts]]
kind = "local"
slots = 2
[[hosts]]
kind = "ssh"
name = "builder"
address = "build.example.com"
slots = 4
"""))
    lines = summary(cfg)
    assert lines["speculation"] == "3 branches for every unit, chosen by review"
    assert lines["merge queue"] == "batches of 2, one batch at a time (speculative_depth 0)"
    assert lines["hosts"] == "local0 (local, 2 slots), builder (ssh build.example.com, 4 slots)"
    assert lines["precheck"] == "off (the merge queue bisects to find a failing unit)"


@pytest.mark.parametrize(("text", "key", "got"), [
    ('[review]\ngate_completion = "yes"\n', "review.gate_completion", "'yes'"),
    ('[review]\ngate_completion = "false"\n', "review.gate_completion", "'false'"),
    ("[speculation]\nenabled = 1\n", "speculation.enabled", "1"),
    ('[hitl.telegram]\nenabled = "off"\n', "hitl.telegram.enabled", "'off'"),
    ('[[hosts]]\nkind = "ssh"\naddress = "h"\ntrust_unknown_host_key = "no"\n',
     "hosts.0.ssh.trust_unknown_host_key", "'no'"),
])
def test_a_toml_boolean_must_be_a_toml_boolean(tmp_path: Path, text: str, key: str, got: str) -> None:
    """Pydantic's lax mode took "yes", "off", 1 for a bool: in TOML only true / false."""
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert f"{key}: must be true or false (got {got})" in str(err.value)


@pytest.mark.parametrize(("value", "expected"), [
    ("false", False), ("0", False), ("off", False), ("no", False), ("True", True), ("1", True),
])
def test_an_env_override_of_a_boolean_takes_its_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, expected: bool,
) -> None:
    """MC_* values are text by nature: the strict booleans of the file do not apply to them."""
    monkeypatch.setenv("MC_REVIEW__GATE_COMPLETION", value)
    monkeypatch.setenv("MC_HITL__TELEGRAM__ENABLED", value)
    cfg = load_config(write(tmp_path, "[review]\ngate_completion = true\n"
                                      "[hitl.telegram]\nenabled = true\n"))
    assert cfg.review.gate_completion is expected and cfg.hitl.telegram.enabled is expected


def test_an_env_override_of_a_boolean_that_is_no_boolean_names_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MC_REVIEW__GATE_COMPLETION", "maybe")
    with pytest.raises(ConfigError, match=r"review\.gate_completion: must be true or false"):
        load_config(write(tmp_path, ""))
