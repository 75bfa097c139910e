"""The real agent CLIs at pinned versions, installed into a cache folder when missing.

Cache: ``$MC_TEST_CLI_CACHE`` or ``~/.cache/mission-control-tests/clis``; one folder per
CLI and version (``claude-2.1.332/``, ``aider-0.86.2/`` ...). npm packages are installed with
``npm install --prefix <tmp>`` and the folder renamed into place when ``--version`` runs;
aider gets its own relocatable ``uv venv`` (never the project's venv). A file lock per CLI
(``<cache>/<name>.lock``) keeps parallel pytest sessions from racing; a ``.complete`` file
marks a finished install.

Fixtures (session scope, in :mod:`tests.support.fixtures`): ``claude_cli``, ``codex_cli``,
``gemini_cli``, ``aider_cli`` give the executable path. Under ``CI=true`` a failed install
fails the test; elsewhere a missing ``npm``/``uv`` or a failed install skips it with the reason.

:func:`claude_env` is the environment for Claude Code pointed at a model server, with a
private ``HOME``/``CLAUDE_CONFIG_DIR`` so the user's own config is never read or written.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INSTALL_TIMEOUT_S = 900
DUMMY_ANTHROPIC_KEY = "sk-ant-api03-mc-test-dummy-key"
DUMMY_OAUTH_TOKEN = "sk-ant-oat01-mc-test-dummy-token"


@dataclass(frozen=True)
class CliSpec:
    """A CLI to install: ``npm`` package or ``pypi`` distribution, pinned version, binary."""

    name: str
    version: str
    binary: str
    npm: str | None = None
    pypi: str | None = None

    @property
    def folder(self) -> str:
        return f"{self.name}-{self.version}"


CLAUDE = CliSpec("claude", "2.1.332", "claude", npm="@anthropic-ai/claude-code")
CODEX = CliSpec("codex", "0.171.0", "codex", npm="@openai/codex")
GEMINI = CliSpec("gemini", "0.61.0", "gemini", npm="@google/gemini-cli")
AIDER = CliSpec("aider", "0.86.2", "aider", pypi="aider-chat")
SPECS = {spec.name: spec for spec in (CLAUDE, CODEX, GEMINI, AIDER)}


class CliInstallError(RuntimeError):
    """The CLI could not be installed; ``missing_tool`` names npm/uv when that was the cause."""

    def __init__(self, message: str, missing_tool: str | None = None) -> None:
        super().__init__(message)
        self.missing_tool = missing_tool


def cache_root() -> Path:
    """Where the CLIs are installed (``MC_TEST_CLI_CACHE`` overrides)."""
    configured = os.environ.get("MC_TEST_CLI_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "mission-control-tests" / "clis"


def executable_path(spec: CliSpec, root: Path | None = None) -> Path:
    base = (root or cache_root()) / spec.folder
    if spec.pypi:
        return base / "venv" / "bin" / spec.binary
    return base / "node_modules" / ".bin" / spec.binary


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(argv: list[str], **kwargs: object) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
                          **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise CliInstallError(f"`{' '.join(argv)}` exited {proc.returncode}:\n{tail}")


def _check_version(exe: Path, spec: CliSpec) -> None:
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HOME": tempfile.gettempdir()}, stdin=subprocess.DEVNULL)
    if proc.returncode != 0 or spec.version not in proc.stdout + proc.stderr:
        raise CliInstallError(f"{exe} --version gave exit {proc.returncode}: "
                              f"{(proc.stdout + proc.stderr).strip()[-500:]}")


def install(spec: CliSpec, root: Path | None = None) -> Path:
    """Install ``spec`` into the cache unless it is there; return the executable's path.

    Raises :class:`CliInstallError` (with ``missing_tool`` set when npm or uv is absent).
    """
    root = root or cache_root()
    final = root / spec.folder
    exe = executable_path(spec, root)
    if (final / ".complete").exists() and exe.exists():
        return exe
    tool = "npm" if spec.npm else "uv"
    if shutil.which(tool) is None:
        raise CliInstallError(f"{tool} is not on PATH; it is needed to install {spec.folder}",
                              missing_tool=tool)
    with _locked(root / f"{spec.name}.lock"):
        if (final / ".complete").exists() and exe.exists():
            return exe  # another session installed it while we waited
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{spec.folder}-", dir=root))
        try:
            if spec.npm:
                _run(["npm", "install", "--prefix", str(tmp), "--no-audit", "--no-fund",
                      "--loglevel=error", f"{spec.npm}@{spec.version}"])
            else:
                _run(["uv", "venv", "--relocatable", "--python", "3.11", "--no-project",
                      str(tmp / "venv")])
                _run(["uv", "pip", "install", "--python", str(tmp / "venv" / "bin" / "python"),
                      f"{spec.pypi}=={spec.version}"])
            if final.exists():
                shutil.rmtree(final)  # a half-finished folder from an interrupted install
            os.rename(tmp, final)
            _check_version(exe, spec)
            (final / ".complete").write_text(spec.version + "\n")
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return exe


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def claude_env(
    base_url: str,
    home: Path,
    *,
    extra: Mapping[str, str] | None = None,
    api_key: str = DUMMY_ANTHROPIC_KEY,
    oauth: bool = False,
) -> dict[str, str]:
    """Environment for real Claude Code talking only to ``base_url``.

    ``oauth=True`` logs in as a subscription user instead (a dummy
    ``CLAUDE_CODE_OAUTH_TOKEN``, no API key): then Claude Code honours the
    ``anthropic-ratelimit-unified-*`` headers (``usage_limit_reached()`` gives "You've hit
    your 5-hour limit") and prints ``rate_limit_event`` lines.

    ``home`` becomes ``HOME`` and holds ``CLAUDE_CONFIG_DIR`` and the XDG dirs, so nothing of
    the user's config is used or written. Nothing else from ``os.environ`` is kept but
    ``PATH``, ``LANG``, ``TMPDIR`` and ``TZ`` (no real API keys leak in).
    """
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TMPDIR", "TZ")}
    env.update({
        "HOME": str(home),
        "USER": "mc-test",
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "ANTHROPIC_BASE_URL": base_url,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
    })
    if oauth:
        env["CLAUDE_CODE_OAUTH_TOKEN"] = DUMMY_OAUTH_TOKEN
    else:
        env["ANTHROPIC_API_KEY"] = api_key
    env.update(extra or {})
    return env


@dataclass
class ClaudeRun:
    """What ``claude -p --output-format stream-json`` printed."""

    exit_code: int
    lines: list[dict[str, Any]]
    stderr: str

    def of_type(self, kind: str, subtype: str | None = None) -> list[dict[str, Any]]:
        return [o for o in self.lines if o.get("type") == kind
                and (subtype is None or o.get("subtype") == subtype)]

    @property
    def result(self) -> dict[str, Any]:
        results = self.of_type("result")
        assert results, f"no result line (exit {self.exit_code}): {self.stderr[-2000:]}"
        return results[-1]

    def tool_results(self) -> list[dict[str, Any]]:
        """Every tool_result block the CLI sent back, in order."""
        return [block for o in self.of_type("user")
                for block in (o.get("message") or {}).get("content") or []
                if isinstance(block, dict) and block.get("type") == "tool_result"]


def run_claude_print(
    executable: str,
    prompt: str,
    *,
    cwd: Path,
    env: Mapping[str, str],
    args: Sequence[str] = (),
    timeout: float = 120,
) -> ClaudeRun:
    """Run ``claude -p --output-format stream-json --verbose <args>`` with ``prompt`` on stdin."""
    argv = [executable, "-p", "--output-format", "stream-json", "--verbose", *args]
    proc = subprocess.run(argv, input=prompt, cwd=cwd, env=dict(env), capture_output=True,
                          text=True, timeout=timeout)
    lines = []
    for raw in proc.stdout.splitlines():
        raw = raw.strip()
        if raw:
            try:
                lines.append(json.loads(raw))
            except ValueError:
                lines.append({"type": "<non-json>", "text": raw})
    return ClaudeRun(proc.returncode, lines, proc.stderr)


def _base_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TMPDIR", "TZ")}
    env.update({"HOME": str(home), "USER": "mc-test",
                "XDG_CONFIG_HOME": str(home / ".config"), "XDG_CACHE_HOME": str(home / ".cache"),
                "XDG_DATA_HOME": str(home / ".local" / "share")})
    return env


def codex_env(base_url: str, home: Path, *, model: str = "gpt-5.5",
              extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for real codex talking only to ``base_url`` (the server root).

    Writes ``$CODEX_HOME/config.toml`` with a ``mock`` model provider (``wire_api =
    "responses"``, ``base_url = <url>/v1``, ``supports_websockets = false``, no retries) as
    the default provider: codex 0.171 ignores ``OPENAI_BASE_URL`` and would otherwise try
    ``wss://api.openai.com`` first.

    ``CODEX_HOME`` is a fresh folder under the CLI cache, *not* under ``home`` when that is a
    temporary folder: codex refuses to create its helper binaries under a temp dir ("Refusing
    to create helper binaries under temporary dir"), and where bubblewrap is installed its
    sandbox runs ``apply_patch`` through them, so every file write then fails ("Failed to
    write file"). The folder is removed when the test process exits.
    """
    env = _base_env(home)
    homes = cache_root() / "codex-homes"
    homes.mkdir(parents=True, exist_ok=True)
    codex_home = Path(tempfile.mkdtemp(prefix="home-", dir=homes))
    atexit.register(shutil.rmtree, codex_home, True)
    (codex_home / "config.toml").write_text(
        f'model = "{model}"\nmodel_provider = "mock"\n\n[model_providers.mock]\n'
        f'name = "mock"\nbase_url = "{base_url}/v1"\nenv_key = "OPENAI_API_KEY"\n'
        f'wire_api = "responses"\nsupports_websockets = false\n'
        f"request_max_retries = 0\nstream_max_retries = 0\n"
    )
    env.update({"CODEX_HOME": str(codex_home), "OPENAI_API_KEY": "sk-mc-test-dummy"})
    env.update(extra or {})
    return env


def gemini_env(base_url: str, home: Path, *,
               extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for real gemini-cli talking only to ``base_url``.

    ``GOOGLE_GEMINI_BASE_URL`` + a dummy ``GEMINI_API_KEY``, and
    ``<home>/.gemini/settings.json`` selecting the ``gemini-api-key`` auth type (without it
    headless gemini exits 41, "Invalid auth method selected"). Run it with ``--skip-trust``
    (else it drops to the ``default`` approval mode) and ``-m <model>`` or answer the
    ``auto`` router's classifier (:func:`tests.support.scripts.gemini_router_rule`).
    """
    env = _base_env(home)
    settings = home / ".gemini"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "settings.json").write_text(json.dumps({
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "privacy": {"usageStatisticsEnabled": False},
    }))
    env.update({"GEMINI_API_KEY": "mc-test-dummy-key", "GOOGLE_GEMINI_BASE_URL": base_url,
                "GEMINI_CLI_NO_RELAUNCH": "true"})
    env.update(extra or {})
    return env


def aider_env(base_url: str, home: Path, *,
              extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for real aider talking only to ``base_url`` (OpenAI chat completions).

    ``AIDER_OPENAI_API_BASE=<url>/v1`` and a dummy ``OPENAI_API_KEY``; update checks,
    analytics and model warnings off. Use a model named ``openai/<name>``. A fresh, non-empty
    ``~/.aider/caches/model_prices_and_context_window.json`` stops aider fetching litellm's
    price list from raw.githubusercontent.com at start (it does when the file is missing, empty
    or older than a day); litellm's bundled prices still give a cost.
    """
    env = _base_env(home)
    caches = home / ".aider" / "caches"
    caches.mkdir(parents=True, exist_ok=True)
    (caches / "model_prices_and_context_window.json").write_text('{"mc-test": {}}')  # non-empty
    env.update({"OPENAI_API_KEY": "sk-mc-test-dummy", "AIDER_OPENAI_API_BASE": f"{base_url}/v1",
                "AIDER_CHECK_UPDATE": "false", "AIDER_ANALYTICS": "false",
                "AIDER_SHOW_MODEL_WARNINGS": "false", "AIDER_PRETTY": "false",
                # litellm would fetch its price list from raw.githubusercontent.com at start
                "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    env.update(extra or {})
    return env


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.support.real_clis [name ...]``: install (default: all) and print paths."""
    import sys

    names = list(argv if argv is not None else sys.argv[1:]) or list(SPECS)
    status = 0
    for name in names:
        spec = SPECS.get(name)
        if spec is None:
            print(f"unknown CLI {name!r}; choose from {', '.join(SPECS)}", file=sys.stderr)
            return 2
        try:
            print(f"{spec.folder}: {install(spec)}")
        except CliInstallError as exc:
            print(f"{spec.folder}: FAILED: {exc}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
