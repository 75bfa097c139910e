"""Set up the bundled demo: a small Python project as a fresh git repo with a bare "origin"."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEMO_SOURCE = EXAMPLES / "demo"


class DemoError(RuntimeError):
    pass


def _git(cwd: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "mc demo", "GIT_AUTHOR_EMAIL": "demo@localhost",
        "GIT_COMMITTER_NAME": "mc demo", "GIT_COMMITTER_EMAIL": "demo@localhost",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise DemoError(f"git {' '.join(args)} failed: {result.stderr.strip()}")


def prepare_demo(dest: Path | None = None) -> Path:
    """Copy the demo project to ``dest`` (default: a new temp folder) and return the config path.

    Layout: ``<dest>/repo`` (the target, branch ``main``), ``<dest>/origin.git`` (bare
    remote), ``<dest>/mission-control.toml`` and ``<dest>/cassette.toml``.
    """
    if not (DEMO_SOURCE / "project").is_dir():
        raise DemoError(f"demo files not found under {DEMO_SOURCE}")
    dest = Path(dest) if dest else Path(tempfile.mkdtemp(prefix="mc-demo-"))
    dest.mkdir(parents=True, exist_ok=True)
    repo = dest / "repo"
    if repo.exists():
        raise DemoError(f"{repo} already exists; choose an empty folder")
    shutil.copytree(DEMO_SOURCE / "project", repo, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "Initial commit: calc library with tests")
    origin = dest / "origin.git"
    _git(dest, "init", "-q", "--bare", str(origin))
    _git(repo, "remote", "add", "origin", str(origin))
    _git(repo, "push", "-q", "origin", "main")
    shutil.copy(DEMO_SOURCE / "cassette.toml", dest / "cassette.toml")
    config_text = (DEMO_SOURCE / "mission-control.toml").read_text()
    # The verification runs the demo's unittest suite with this very interpreter.
    python = shlex.quote(sys.executable).replace("\\", "\\\\").replace('"', '\\"')
    (dest / "mission-control.toml").write_text(config_text.replace("@PYTHON@", python))
    return dest / "mission-control.toml"
