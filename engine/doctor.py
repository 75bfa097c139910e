"""``mc doctor``: check that a mission can start here, without spending anything.

Each check is local or a plain network probe (a TCP connect and an HTTP ``HEAD`` of a base
URL; never a model call): the target repository and its branch, where the worktrees will
live, and for the configured agent backend its binary and version, its credentials (as the
agent will see them: the same environment allowlist) and its base URL.

Backends are described by :class:`BackendSpec` rows in :data:`BACKENDS`; another backend
adds a row (binary, version flag, credential variables, base-URL variables, hints) and, if
it has a cheaper and surer login check than its variables, a ``login_probe``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from engine.agents.process import build_env
from engine.config import MissionConfig, inside_git_dir, secret_env_names

OK, MISSING, WARNING = "ok", "missing", "warning"
PROBE_TIMEOUT_S = 3.0
VERSION_TIMEOUT_S = 20.0


@dataclass
class Check:
    """One line of the doctor's table."""

    name: str
    status: str  # ok | missing | warning
    detail: str
    fix: str = ""
    required: bool = True

    @property
    def failed(self) -> bool:
        return self.status == MISSING and self.required


# A login probe: (executable, agent env) -> (logged in?, detail) or None when it cannot tell.
LoginProbe = Callable[[str, Mapping[str, str]], "tuple[bool, str] | None"]


@dataclass(frozen=True)
class BackendSpec:
    """How to check one agent CLI (``[agent] backend``)."""

    name: str
    binary: str
    install_hint: str
    version_args: tuple[str, ...] = ("--version",)
    key_env: tuple[str, ...] = ()  # any one of them set is a credential
    alt_auth_env: tuple[str, ...] = ()  # e.g. CLAUDE_CODE_USE_BEDROCK: the cloud's own auth
    credential_files: tuple[str, ...] = ()  # relative to HOME: a stored login
    base_url_env: tuple[str, ...] = ()
    login_hint: str = ""
    login_probe: LoginProbe | None = field(default=None, compare=False)


def claude_auth_status(executable: str, env: Mapping[str, str]) -> tuple[bool, str] | None:
    """``claude auth status`` (JSON, exit 0 when logged in; exists on 2.1.x, makes no model
    call). None when this version has no such command."""
    try:
        proc = subprocess.run([executable, "auth", "status"], capture_output=True, text=True,
                              env=dict(env), timeout=VERSION_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        return None
    if not isinstance(data, dict) or "loggedIn" not in data:
        return None
    method = data.get("authMethod") or "none"
    source = data.get("apiKeySource")
    detail = f"claude auth status: {'logged in' if data['loggedIn'] else 'not logged in'} " \
             f"({method}{', ' + source if source else ''}, provider {data.get('apiProvider')})"
    return bool(data["loggedIn"]), detail


BACKENDS: dict[str, BackendSpec] = {
    "claude": BackendSpec(
        name="claude", binary="claude",
        install_hint="npm install -g @anthropic-ai/claude-code",
        key_env=("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"),
        alt_auth_env=("CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX"),
        credential_files=(".claude/.credentials.json",),
        base_url_env=("ANTHROPIC_BASE_URL",),
        login_hint="run `claude` once and /login, or export ANTHROPIC_API_KEY "
                   "(Bedrock: CLAUDE_CODE_USE_BEDROCK=1, Vertex: CLAUDE_CODE_USE_VERTEX=1)",
        login_probe=claude_auth_status,
    ),
    "codex": BackendSpec(
        name="codex", binary="codex", install_hint="npm install -g @openai/codex",
        key_env=("OPENAI_API_KEY", "CODEX_API_KEY", "AZURE_OPENAI_API_KEY"),
        credential_files=(".codex/auth.json",),
        # codex 0.171 ignores OPENAI_BASE_URL: a proxy is a [model_providers.<x>] base_url in
        # $CODEX_HOME/config.toml (docs/agents.md), which has no environment variable to probe
        base_url_env=(),
        login_hint="export OPENAI_API_KEY, or run `codex login`",
    ),
    "gemini": BackendSpec(
        name="gemini", binary="gemini", install_hint="npm install -g @google/gemini-cli",
        key_env=("GEMINI_API_KEY", "GOOGLE_API_KEY"), alt_auth_env=("GOOGLE_GENAI_USE_VERTEXAI",),
        credential_files=(".gemini/oauth_creds.json",),
        base_url_env=("GOOGLE_GEMINI_BASE_URL", "GOOGLE_VERTEX_BASE_URL"),
        login_hint="export GEMINI_API_KEY, or run `gemini` once and sign in",
    ),
    "aider": BackendSpec(
        name="aider", binary="aider", install_hint="pipx install aider-chat",
        key_env=("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "AIDER_OPENAI_API_KEY",
                 "AIDER_ANTHROPIC_API_KEY", "AIDER_API_KEY"),
        # OPENAI_BASE_URL wins over the other two when set (measured with aider 0.86.2)
        base_url_env=("OPENAI_BASE_URL", "AIDER_OPENAI_API_BASE", "OPENAI_API_BASE"),
        login_hint="export the API key of aider's model (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...)",
    ),
}


# ---------------------------------------------------------------------- checks
def check_repo(config: MissionConfig) -> list[Check]:
    """The target is a git repository with commits, and its base branch exists."""
    from engine.gitops import GitError, GitRepo
    from engine.gitops.branches import resolve_base_branch

    path = Path(config.target.path)
    try:
        repo = GitRepo(path)
    except GitError as exc:
        return [Check("git repository", MISSING, str(exc),
                      f"set target.path to a git repository (or `git init {path}`)")]
    checks = [Check("git repository", OK, str(repo.path))]
    try:
        base = resolve_base_branch(repo, config.target.branch, config.green_branch.remote)
    except GitError as exc:
        if config.target.branch and repo.ref_head("refs/heads/mc/green") is not None:
            checks.append(Check("base branch", WARNING, f"{exc} (mc/green exists)",
                                "set target.branch to an existing branch", required=False))
        else:
            first, *rest = str(exc).splitlines()
            fix = "; ".join(line.strip() for line in rest) or "set target.branch to an existing branch"
            checks.append(Check("base branch", MISSING, first, fix))
        return checks
    checks.append(Check("base branch", OK, f"{base.name} (from {base.source})"))
    return checks


def check_pool(config: MissionConfig) -> Check:
    """Where the worktrees go: outside any .git (Claude Code refuses edits there), writable."""
    pool = config.pool_dir()
    bypass = config.agent.permission_mode == "bypassPermissions"
    if inside_git_dir(pool):
        return Check("worktree pool", WARNING if bypass else MISSING,
                     f"{pool} is inside a .git directory: agents cannot edit files there",
                     "set scheduler.parallel.pool_dir outside .git, or remove it for the default",
                     required=config.agent.backend == "claude" and not bypass)
    probe = pool
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        return Check("worktree pool", MISSING, f"{pool}: {probe} is not writable",
                     "set scheduler.parallel.pool_dir to a writable folder")
    return Check("worktree pool", OK, str(pool))


def _version(executable: str, args: tuple[str, ...], env: Mapping[str, str]) -> tuple[bool, str]:
    try:
        proc = subprocess.run([executable, *args], capture_output=True, text=True, env=dict(env),
                              timeout=VERSION_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False, f"`{executable} {' '.join(args)}` did not answer in {VERSION_TIMEOUT_S:.0f} s"
    except OSError as exc:
        return False, f"cannot run {executable}: {exc}"
    out = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
    if proc.returncode != 0:
        return False, f"`{executable} {' '.join(args)}` exited {proc.returncode}: " \
                      f"{out[-1] if out else ''}"
    return True, out[0] if out else "(no version printed)"


def probe_url(url: str, timeout: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """A TCP connect, then ``HEAD url``: any HTTP answer (even 404) means reachable."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False, f"{url!r} is not an http(s) URL"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        return False, f"cannot connect to {parts.hostname}:{port}: {exc}"
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - http(s) only
            return True, f"HEAD {url}: HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return True, f"HEAD {url}: HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"HEAD {url}: {getattr(exc, 'reason', exc)}"


def check_backend(spec: BackendSpec, env: Mapping[str, str], *, executable: str | None = None,
                  probe: Callable[[str], tuple[bool, str]] = probe_url) -> list[Check]:
    """Binary and version, credentials, base URL of one backend, seen through ``env``."""
    label = spec.name
    exe = executable or shutil.which(spec.binary, path=env.get("PATH"))
    if exe is None:
        return [Check(f"{label}: binary", MISSING, f"`{spec.binary}` is not on the agents' PATH",
                      spec.install_hint)]
    ok, version = _version(exe, spec.version_args, env)
    checks = [Check(f"{label}: binary", OK if ok else MISSING, f"{exe} ({version})" if ok else version,
                    "" if ok else f"reinstall: {spec.install_hint}")]
    checks.append(_credentials(spec, exe, env))
    for name in spec.base_url_env:
        url = env.get(name, "").strip()
        if not url:
            continue
        reachable, detail = probe(url)
        checks.append(Check(f"{label}: {name}", OK if reachable else MISSING, detail,
                            "" if reachable else f"start the server at {url}, or unset {name}"))
    return checks


def _credentials(spec: BackendSpec, exe: str, env: Mapping[str, str]) -> Check:
    name = f"{spec.name}: login"
    if spec.login_probe is not None:
        answer = spec.login_probe(exe, env)
        if answer is not None:
            logged_in, detail = answer
            return Check(name, OK if logged_in else MISSING, detail,
                         "" if logged_in else spec.login_hint)
    keys = [k for k in spec.key_env if env.get(k)]
    if keys:
        return Check(name, OK, f"{keys[0]} is set")
    alt = [k for k in spec.alt_auth_env if env.get(k) not in (None, "", "0", "false")]
    if alt:
        return Check(name, OK, f"{alt[0]} is set (the cloud's own credentials are used)")
    home = Path(env.get("HOME", "~")).expanduser()
    files = [home / f for f in spec.credential_files if (home / f).is_file()]
    if files:
        return Check(name, OK, f"stored login {files[0]}")
    wanted = ", ".join(spec.key_env) or "credentials"
    return Check(name, MISSING, f"none of {wanted} is set for the agents", spec.login_hint)


def run_checks(config: MissionConfig, *, base_env: Mapping[str, str] | None = None,
               probe: Callable[[str], tuple[bool, str]] = probe_url) -> list[Check]:
    """Every check for ``config`` (a missing required one means a mission cannot start)."""
    checks = check_repo(config)
    checks.append(check_pool(config))
    agent = config.agent
    env = build_env(passthrough=agent.env_passthrough, deny=secret_env_names(config),
                    base=base_env)
    if agent.backend in BACKENDS:
        checks += check_backend(BACKENDS[agent.backend], env, probe=probe)
    elif agent.backend == "scripted":
        cassette = agent.cassette
        checks.append(Check("scripted: cassette", OK if cassette and Path(cassette).is_file()
                            else MISSING, str(cassette) if cassette else "no agent.cassette set",
                            "set agent.cassette to a cassette file (docs/agents.md)"))
    elif agent.backend == "command":
        program = agent.command[0] if agent.command else ""
        found = shutil.which(program, path=env.get("PATH")) if program else None
        checks.append(Check("command: binary", OK if found else MISSING,
                            found or f"`{program or '(no agent.command)'}` not found",
                            "set agent.command to an argv whose program is on PATH"))
    checks += check_host_list(config)
    if agent.permission_mode == "bypassPermissions":
        checks.append(Check("permissions", WARNING, "bypassPermissions: agents run with NO "
                            "permission checks (opted in)", "remove agent.permission_mode for "
                            "the default profile", required=False))
    return checks


def check_host_list(config: MissionConfig) -> list[Check]:
    """One check per ``[[hosts]]`` entry: the host's own health check (bubblewrap probe, SSH
    login, joining the Ray cluster), the one a mission runs before its first dispatch. A
    failing host is a warning when another host can still run agents, else missing."""
    if not config.hosts:
        return []
    from engine.hosts import HostFleet

    fleet = HostFleet.from_config(config.hosts)
    problems = {s.host.name: s.host.check() for s in fleet.states}
    none_left = all(problems.values())
    return [Check(f"host: {name}", (MISSING if none_left else WARNING) if problem else OK,
                  problem or f"{state.host.kind}, {state.host.slots} slot(s)",
                  "see docs/hosts.md for this kind's keys" if problem else "")
            for (name, problem), state in zip(problems.items(), fleet.states, strict=True)]
