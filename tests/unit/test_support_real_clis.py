"""The real-CLI installer's own logic: lock, atomic rename, marker, missing npm.

``npm`` here is a small script on PATH standing in for the registry (it records each call
and lays out ``node_modules/.bin/<name>`` as npm does); the real installs are exercised by
the ``claude_cli`` / ``codex_cli`` / ... fixtures.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from tests.support.real_clis import CliInstallError, CliSpec, executable_path, install

SPEC = CliSpec("demo", "1.2.3", "demo", npm="@example/demo")
FAKE_NPM = """#!/bin/sh
# npm install --prefix DIR ... PKG@VERSION
echo "$@" >> "$NPM_LOG"
sleep 0.3
[ -n "$NPM_FAIL" ] && { echo "npm ERR! network" >&2; exit 1; }
prefix="$3"
mkdir -p "$prefix/node_modules/.bin"
printf '#!/bin/sh\\necho "demo 1.2.3"\\n' > "$prefix/node_modules/.bin/demo"
chmod +x "$prefix/node_modules/.bin/demo"
"""


@pytest.fixture
def fake_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    npm = bindir / "npm"
    npm.write_text(FAKE_NPM)
    npm.chmod(npm.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "npm.log"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("NPM_LOG", str(log))
    return log


def test_parallel_installs_run_npm_once_and_share_the_result(fake_npm: Path,
                                                             tmp_path: Path) -> None:
    root = tmp_path / "cache"
    paths: list[Path] = []
    threads = [threading.Thread(target=lambda: paths.append(install(SPEC, root)))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fake_npm.read_text().splitlines()) == 1
    assert "@example/demo@1.2.3" in fake_npm.read_text()
    assert paths == [executable_path(SPEC, root)] * 3
    assert (root / "demo-1.2.3" / ".complete").read_text() == "1.2.3\n"
    assert [p.name for p in root.iterdir() if p.name.startswith(".tmp")] == []
    install(SPEC, root)  # cached: no new npm call
    assert len(fake_npm.read_text().splitlines()) == 1


def test_a_failed_install_leaves_nothing_behind(fake_npm: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NPM_FAIL", "1")
    root = tmp_path / "cache"
    with pytest.raises(CliInstallError, match="npm ERR! network"):
        install(SPEC, root)
    assert sorted(p.name for p in root.iterdir()) == ["demo.lock"]


def test_missing_npm_names_the_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(CliInstallError) as info:
        install(SPEC, tmp_path / "cache")
    assert info.value.missing_tool == "npm"
