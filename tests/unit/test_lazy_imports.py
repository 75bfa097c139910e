"""What the TUI imports before its first frame (docs/tui.md, "Imports before the first frame").

At a first start (no bytecode cache for mc's own modules) every mc module imported before the
first frame is compiled from source first, so the modules the frame does not need must stay
out: agent backends, git, services, the controller and its pipeline. Checked on the real app,
headless, in a fresh interpreter: the ``sys.modules`` at its first frame and at the frame that
shows the mission (the engine worker starts after these).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from engine.store import Store
from tests.support.tui_world import SyntheticMission

ROOT = Path(__file__).resolve().parents[2]

# What `mc dashboard` / `mc` run up to the first frame (as benchmarks/bench_tui.py's CHILD).
CHILD = """
import json, sys
import mc_tui.cli
from pathlib import Path
from engine.config import MissionConfig
from engine.store import Store
from mc_tui.app import MissionControlApp
root = Path(sys.argv[1])
config = MissionConfig()
config.target.path = root / "repo"
app = MissionControlApp(Store(root / "mission.db"), config=config, attach=True)
seen = {}
first, drawn = app._after_first_paint, app._mark_data_painted
def after_first_paint():
    seen["first_frame"] = sorted(sys.modules)
    first()
def data_painted():
    drawn()
    seen["mission_drawn"] = sorted(sys.modules)
    app.exit(0)
app._after_first_paint, app._mark_data_painted = after_first_paint, data_painted
app.run(headless=True, size=(120, 40))
print(json.dumps(seen))
"""

# Not needed to draw the dashboard; each one measured in the first-start figure (issue 17).
NOT_BEFORE_FIRST_FRAME = [
    "engine.agents.claude", "engine.agents.command", "engine.agents.worker",
    "engine.agents.cassette", "engine.agents.scripted", "engine.agents.factory",
    "engine.controller", "engine.gitops", "engine.services", "engine.learning", "engine.hosts",
    "engine.plugins", "engine.pipeline", "engine.runner",
    "pygit2", "mcp", "opentelemetry", "asyncssh", "httpx", "fastapi", "uvicorn", "a2a", "ray",
]


def test_first_frame_imports_only_what_it_draws(tmp_path: Path) -> None:
    store = Store(tmp_path / "mission.db")
    # no approval pending: a pending approval's diff is read with pygit2 as the mission is drawn
    SyntheticMission(store, repo=tmp_path / "repo", pending_approval=False,
                     base_ts=time.time() - 600).write()
    store.close()
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    for moment in ("first_frame", "mission_drawn"):
        loaded = set(seen[moment])
        assert "mc_tui.app" in loaded and "engine.config" in loaded  # the probe itself works
        early = sorted(m for m in loaded for name in NOT_BEFORE_FIRST_FRAME
                       if m == name or m.startswith(name + "."))
        assert not early, f"imported before the {moment.replace('_', ' ')}: {early}"


def test_engine_agents_names_resolve_on_first_use() -> None:
    code = ("import sys, engine.agents as a\n"
            "assert 'engine.agents.claude' not in sys.modules\n"
            "from engine.agents import ClaudeBackend, make_backend, AgentEvent\n"
            "assert ClaudeBackend.__module__ == 'engine.agents.claude'\n"
            "assert all(getattr(a, n) is not None for n in a.__all__)\n"
            "try:\n    a.NoSuchName\nexcept AttributeError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines == ["module 'engine.agents' has no attribute 'NoSuchName'"]

