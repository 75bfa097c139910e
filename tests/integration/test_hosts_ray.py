"""Ray cluster worker hosts against Ray's own multi-node test cluster on loopback.

One cluster for the module (``ray.cluster_utils.Cluster``): a head without agent slots and two
worker nodes with one ``mc_agent_slot`` each, each node with its own home folder (so its own
clone, as on separate machines). The scripted backend's ``run`` actions are real processes on
the nodes; they write where they ran (``$HOME`` is the node's) into files that must reach
``mc/green``. The git remote every node reaches is a bare repository on local disk.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

from engine.controller import Controller
from engine.host_config import RayHostConfig
from engine.hosts.ray_cluster import RayHost, ray  # sets RAY_ENABLE_UV_RUN_RUNTIME_ENV first
from engine.hosts.ray_verify import RayVerifier
from engine.models import MissionStatus, UnitStatus
from tests.e2e.conftest import make_target
from tests.support.host_missions import prepared, two_units

if TYPE_CHECKING:
    from ray.cluster_utils import Cluster

pytestmark = pytest.mark.slow
STORE_MB = 80 * 1024 * 1024


@dataclass
class RayWorld:
    cluster: Cluster
    homes: dict[str, Path]  # worker name -> that node's home folder
    nodes: dict[str, object]  # worker name -> ray._private.node.Node

    def host_config(self, remote: Path | str, name: str = "cluster", extra: str = "") -> str:
        return (f'\n[[hosts]]\nkind = "ray"\nname = "{name}"\naddress = "{self.cluster.address}"'
                f'\nremote = "{remote}"\nslots = 2\nstart_timeout = 90\n{extra}')


@pytest.fixture(scope="module")
def ray_world() -> Iterator[RayWorld]:
    from ray.cluster_utils import Cluster

    root = Path(tempfile.mkdtemp(prefix="mcray-", dir="/tmp"))  # short: ray's socket paths
    # Ray writes the cluster's address to <its default temp dir>/ray_current_cluster without
    # creating that folder (/tmp/ray, absent on a fresh machine): point the default here
    saved = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = str(root)
    cluster = Cluster(initialize_head=True, head_node_args=dict(
        num_cpus=0, object_store_memory=STORE_MB, include_dashboard=False,
        temp_dir=str(root / "ray")))
    homes, nodes = {}, {}
    for name in ("w1", "w2"):
        homes[name] = root / f"home-{name}"
        homes[name].mkdir()
        nodes[name] = cluster.add_node(
            num_cpus=1, object_store_memory=STORE_MB, resources={"mc_agent_slot": 1},
            env_vars={"HOME": str(homes[name])})
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield RayWorld(cluster, homes, nodes)
    finally:
        ray.shutdown()
        cluster.shutdown()
        if saved is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = saved
        shutil.rmtree(root, ignore_errors=True)


def on_node(n: int) -> str:
    """Shell: write where unit n ran (the node's ``$HOME``) into a file named after it."""
    return f"echo $HOME > app/unit_{n}_on_$(basename $HOME).txt"


def mission(tmp_path: Path, world: RayWorld, firsts: tuple[str, str],
            extra: str = "") -> Controller:
    repo = make_target(tmp_path)
    shared = tmp_path / "shared.git"  # the remote every node reaches
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(shared)], check=True)
    return prepared(tmp_path, two_units(firsts, write=on_node),
                    world.host_config(shared, extra=extra))


def green_files(tmp_path: Path) -> set[str]:
    return set(subprocess.run(["git", "-C", str(tmp_path / "repo"), "ls-tree", "--name-only",
                               "mc/green", "app/"], capture_output=True, text=True,
                              check=True).stdout.split())


def test_a_mission_runs_its_units_on_both_worker_nodes(tmp_path: Path,
                                                       ray_world: RayWorld) -> None:
    # Each session waits until both have started: with one slot per node, both nodes are busy.
    gate = tmp_path / "started"
    first = (f"touch {gate}_$(basename $HOME); for i in $(seq 100); do "
             f"ls {gate}_home-w1 {gate}_home-w2 >/dev/null 2>&1 && break; sleep 0.2; done; ")
    controller = mission(tmp_path, ray_world, (first, first))
    outcome = anyio.run(controller.run)
    assert outcome.status == MissionStatus.COMPLETED, outcome
    assert {u["status"] for u in controller.store.units(outcome.mission_id) if u["is_leaf"]} \
        == {UnitStatus.MERGED}
    files = green_files(tmp_path)
    ran_on = {f.rsplit("_on_", 1)[1].removesuffix(".txt") for f in files if "_on_" in f}
    assert ran_on == {"home-w1", "home-w2"}, files  # fetched back from both nodes, merged
    hosts = {r["host"] for r in controller.store.query(
        "SELECT host FROM attempts WHERE role = 'worker'")}
    assert hosts == {"cluster"}
    for home in ray_world.homes.values():  # each node its own clone, its worktrees removed
        assert (home / "mc-ray" / "repo.git").is_dir()
        assert list((home / "mc-ray" / "work").iterdir()) == []
    refs = subprocess.run(["git", "-C", str(tmp_path / "shared.git"), "for-each-ref",
                           "refs/mc/"], capture_output=True, text=True, check=True).stdout
    assert refs == ""  # the sessions' refs on the remote are deleted


def test_a_timeout_ends_the_node_process_group_and_the_env_is_allowlisted(
    tmp_path: Path, ray_world: RayWorld, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from engine.agents.process import build_env, run_streaming
    from engine.hosts import running_on

    repo = make_target(tmp_path)
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "-q", str(tmp_path / "wt")],
                   check=True)
    host = RayHost("cluster", 2, RayHostConfig(address=ray_world.cluster.address))
    assert host.check() is None
    monkeypatch.setenv("MC_SECRET_TOKEN", "never-there")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-passed")
    lines: list[str] = []
    mark = f"{time.time_ns() % 10**9}.5"  # a sleep only this test starts

    async def go():  # type: ignore[no-untyped-def]
        with running_on(host):
            return await run_streaming(
                ["sh", "-c", "echo home=$HOME; echo key=$ANTHROPIC_API_KEY; "
                 "echo secret=${MC_SECRET_TOKEN:-none}; echo late > late.txt; "
                 f"(sleep {mark}; echo never) & echo pgid $(ps -o pgid= $$); sleep {mark}"],
                cwd=tmp_path / "wt", env=build_env(), on_line=lambda ln: lines.append(ln.text),
                timeout=3, kill_grace=0.5)

    outcome = anyio.run(go)
    assert outcome.timed_out and outcome.exit_code is None, outcome
    assert lines[1:3] == ["key=sk-test-passed", "secret=none"], lines
    assert lines[0].removeprefix("home=") in {str(h) for h in ray_world.homes.values()}, lines
    assert lines[3].startswith("pgid "), lines
    deadline = time.monotonic() + 10
    while _running(f"sleep {mark}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(f"sleep {mark}")  # the background child went with its group
    # what the session wrote came back, committed (the remote defaulted to the repository)
    assert (tmp_path / "wt" / "late.txt").read_text() == "late\n"


def _running(needle: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if needle in cmd:
                found.append(int(entry.name))
    return found


def test_no_free_slot_is_a_lost_session_and_a_missing_cli_is_file_not_found(
    tmp_path: Path, ray_world: RayWorld,
) -> None:
    from engine.agents.process import build_env, run_streaming
    from engine.hosts import running_on

    repo = make_target(tmp_path)
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "-q", str(tmp_path / "wt")],
                   check=True)
    host = RayHost("cluster", 1, RayHostConfig(address=ray_world.cluster.address,
                                               resource="mc_no_such_slot", start_timeout=2))
    assert "offers the resource 'mc_no_such_slot'" in (host.check() or "")
    assert "verify = true, but no live node of the Ray cluster offers the resource " \
        "'mc_no_verify_slot'" in (RayHost("cluster", 1, RayHostConfig(
            address=ray_world.cluster.address, verify=True,
            verify_resource="mc_no_verify_slot")).check() or "")

    async def go():  # type: ignore[no-untyped-def]
        with running_on(host) as placed, \
                pytest.raises(OSError, match="had a free 'mc_no_such_slot' for 2 s"):
            await run_streaming(["true"], cwd=tmp_path / "wt", env=build_env(),
                                on_line=lambda ln: None)
        return placed.lost

    assert "had a free 'mc_no_such_slot'" in anyio.run(go)

    async def missing():  # type: ignore[no-untyped-def]
        with running_on(RayHost("cluster", 2, RayHostConfig(
                address=ray_world.cluster.address))):
            await run_streaming(["no-such-agent-cli"], cwd=tmp_path / "wt", env=build_env(),
                                on_line=lambda ln: None)

    with pytest.raises(FileNotFoundError, match="no-such-agent-cli is not installed on ray node"):
        anyio.run(missing)
    refs = subprocess.run(["git", "-C", str(repo), "for-each-ref", "refs/mc/"],
                          capture_output=True, text=True, check=True).stdout
    assert refs == ""  # the base pushed for it is deleted again


def test_real_claude_on_a_ray_node_commits_and_its_work_comes_back(
    claude_cli: str, tmp_path: Path, ray_world: RayWorld, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real Claude Code CLI, run by a node against the scripted model server on
    127.0.0.1: its Write and its Bash commit happen on the node, the commit lands locally."""
    import fnmatch

    from engine.agents.claude import ClaudeBackend
    from engine.agents.permissions import profile_for
    from engine.agents.process import BACKEND_ENV
    from engine.agents.types import COMPLETED, AgentEvent, AgentRequest, AgentRole
    from engine.hosts import running_on
    from tests.support.model_server import ModelServer, Rule
    from tests.support.real_clis import claude_env
    from tests.support.script import turns
    from tests.support.scripts import bash, finish, write_file

    for name, home in ray_world.homes.items():  # each node commits as itself
        (home / ".gitconfig").write_text(f"[user]\n\tname = node-{name}\n"
                                         "\temail = node@localhost\n")
    repo = make_target(tmp_path)
    wt = tmp_path / "wt"
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "-q", str(wt), "-b", "unit"],
                   check=True)
    rule = Rule(name="worker", match="You are a worker agent", reply=turns([
        write_file("hello.py", "def hello():\n    return 'hello'\n"),
        bash("git add -A && git commit -qm hello", "Commit"),
        finish("Added hello.", ["hello.py"]),
    ]))
    events: list[AgentEvent] = []
    with ModelServer([rule]) as server:
        for name in list(os.environ):  # no real agent settings or keys from this machine
            if any(fnmatch.fnmatchcase(name, pat) for pat in BACKEND_ENV):
                monkeypatch.delenv(name)
        for key, value in claude_env(server.url, tmp_path / "home").items():
            monkeypatch.setenv(key, value)
        host = RayHost("cluster", 2, RayHostConfig(address=ray_world.cluster.address))
        backend = ClaudeBackend(executable=claude_cli, kill_grace=2)
        profile = profile_for(AgentRole.WORKER, verification_command="python -m unittest")
        request = AgentRequest(role=AgentRole.WORKER, prompt="You are a worker agent. Add hello.",
                               workdir=wt, model="sonnet", max_turns=10, timeout_s=120,
                               permission_mode=profile.mode,
                               allowed_tools=profile.allowed_tools)

        async def go():  # type: ignore[no-untyped-def]
            with running_on(host):
                return await backend.run(request, events.append)

        result = anyio.run(go)
    assert result.status == COMPLETED, (result.error, [e.text for e in events][-8:])
    log = subprocess.run(["git", "-C", str(repo), "log", "--format=%s|%an", "unit"],
                         capture_output=True, text=True, check=True).stdout.split("\n")
    assert log[0] in ("hello|node-w1", "hello|node-w2") and log[1].startswith("initial|"), log
    assert (wt / "hello.py").exists()
    results = [e for e in events if e.type == "tool_result"]
    assert len(results) == 2 and not any(e.data.get("is_error") for e in results), \
        [e.text for e in results]


def test_queue_verifications_run_on_a_ray_node_and_green_is_promoted(
    tmp_path: Path, ray_world: RayWorld,
) -> None:
    controller = mission(tmp_path, ray_world, ("", ""), extra="verify = true\n")
    outcome = anyio.run(controller.run)
    assert outcome.status == MissionStatus.COMPLETED, outcome
    files = " ".join(green_files(tmp_path))
    assert "app/unit_1_on_" in files and "app/unit_2_on_" in files, files
    events = controller.store.events_after(0, outcome.mission_id)
    finished = [e.payload for e in events if e.kind == "verification.finished"]
    assert finished and all(p["host"].startswith("ray host cluster, node ") for p in finished), \
        finished  # the baseline and every candidate ran on a node
    assert {p["status"] for p in finished} == {"passed"}
    rows = controller.store.query("SELECT status, output FROM verifications")
    assert rows and all(r["status"] == "passed" and "Ran 1 test" in r["output"] for r in rows)
    refs = subprocess.run(["git", "-C", str(tmp_path / "shared.git"), "for-each-ref",
                           "refs/mc/"], capture_output=True, text=True, check=True).stdout
    assert refs == ""  # the pushed candidates' refs are deleted


def _verifier(tmp_path: Path, world: RayWorld) -> tuple[Path, RayVerifier]:
    repo = make_target(tmp_path)
    host = RayHostConfig(address=world.cluster.address, verify=True, start_timeout=60)
    return repo, RayVerifier("cluster", host, repo)


def _commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).write_text(text)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-qm", message], check=True)
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()


def test_a_failing_test_on_a_node_is_judged_against_the_baseline_from_its_junit_file(
    tmp_path: Path, ray_world: RayWorld, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from engine.gitops import GitRepo, MergeQueue
    from engine.store import Store

    repo, runner = _verifier(tmp_path, ray_world)
    old = "import unittest\n\nclass Old(unittest.TestCase):\n    def test_old(self):\n" \
          "        self.fail('broken before the mission')\n"
    green = _commit(repo, {"tests/test_old.py": old}, "a test broken on green")
    GitRepo(repo).ensure_green("main")
    monkeypatch.setenv("MC_SECRET_TOKEN", "never-there")
    queue = MergeQueue(
        GitRepo(repo), Store(tmp_path / "mc.db"), mission_id=None,
        verify_command="echo secret=${MC_SECRET_TOKEN:-none}; "
                       f"{sys.executable} -m pytest -q -p no:cacheprovider tests",
        verify_timeout=60, batch_size=1, verify_dir=tmp_path / "verify", flaky_reruns=0,
        remote_verify=runner)
    new_bad = "def test_new():\n    assert 1 == 2\n"
    fine = _commit(repo, {"tests/test_fine.py": "def test_fine():\n    assert True\n"}, "ok")
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", green], check=True)
    worse = _commit(repo, {"tests/test_new.py": new_bad}, "a new failure")

    async def go():  # type: ignore[no-untyped-def]
        baseline = await queue.verify_baseline()
        return baseline, [(c, await queue.verifier.run(c)) for c in (fine, worse)]

    baseline, runs = anyio.run(go)
    assert baseline.status == "failed" and baseline.failing == {"tests.test_old.Old.test_old"}
    (_, ok), (_, bad) = runs
    assert ok.tests.source == "junit" and ok.failing == {"tests.test_old.Old.test_old"}, ok
    assert ok.host.startswith("ray host cluster, node ") and ok.status == "failed"
    verdict = queue.judge(green, ok)
    assert verdict.accepted, verdict  # only the baseline's failure: accepted, like locally
    assert bad.failing == {"tests.test_old.Old.test_old", "tests.test_new.test_new"}, bad
    assert not queue.judge(green, bad).accepted
    assert "1 failed" in ok.output and "secret=none" in ok.output, ok.output


def test_a_timed_out_or_cancelled_remote_verification_leaves_no_process_on_the_node(
    tmp_path: Path, ray_world: RayWorld,
) -> None:
    repo, runner = _verifier(tmp_path, ray_world)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    mark = f"{time.time_ns() % 10**9}.5"
    started = tmp_path / "started"
    command = f"(sleep {mark}; echo never) & echo started > {started}; sleep {mark}"

    result = anyio.run(runner, head, command, 2.0, 65536)
    assert result.status == "timeout" and "timed out after 2s" in result.output, result
    assert result.host.startswith("ray host cluster, node ")
    _gone(f"sleep {mark}")

    started.unlink()

    async def cancel():  # type: ignore[no-untyped-def]
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner, head, command, 120.0, 65536)
            with anyio.fail_after(60):
                while not started.exists():
                    await anyio.sleep(0.1)
            tg.cancel_scope.cancel()

    anyio.run(cancel)
    _gone(f"sleep {mark}")
    refs = subprocess.run(["git", "-C", str(repo), "for-each-ref", "refs/mc/"],
                          capture_output=True, text=True, check=True).stdout
    assert refs == ""  # the candidates pushed for them are deleted again
    for home in ray_world.homes.values():  # the nodes' worktrees and reports removed
        work = home / "mc-ray" / "work"
        assert not work.exists() or list(work.iterdir()) == []


def _gone(needle: str) -> None:
    deadline = time.monotonic() + 10
    while _running(needle) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(needle)


def test_a_worker_node_killed_mid_session_sends_the_unit_to_the_other_node(
    tmp_path: Path, ray_world: RayWorld,
) -> None:
    # Unit 1's first session writes where it runs and hangs; the test kills that node.
    started = tmp_path / "victim"
    mark = f"{time.time_ns() % 10**9}.5"
    first = (f"if [ ! -e {started} ]; then basename $HOME > {started}; sleep {mark}; fi; ")
    controller = mission(tmp_path, ray_world, (first, ""))
    killed: list[str] = []

    def kill_when_started() -> None:
        deadline = time.monotonic() + 120
        while not (started.exists() and started.read_text().strip()) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        name = started.read_text().strip().removeprefix("home-")
        killed.append(name)
        ray_world.cluster.remove_node(ray_world.nodes[name], allow_graceful=False)

    watcher = threading.Thread(target=kill_when_started, daemon=True)
    watcher.start()
    outcome = anyio.run(controller.run)
    watcher.join(5)
    assert outcome.status == MissionStatus.COMPLETED, outcome
    (victim,) = killed
    events = controller.store.events_after(0, outcome.mission_id)
    (lost,) = [e for e in events if e.kind == "host.session_lost"]
    print("session lost:", lost.payload["reason"])
    assert lost.payload["host"] == "cluster" and "lost during the session (The actor " in \
        lost.payload["reason"] and "died" in lost.payload["reason"], lost.payload
    assert not [e for e in events if e.kind == "host.drained"]  # the cluster stays in service
    unit = controller.store.get("units", lost.unit_id)
    assert unit is not None and unit["status"] == UnitStatus.MERGED
    assert "Unit 1" in unit["title"]
    other = ({"w1", "w2"} - {victim}).pop()
    assert f"app/unit_1_on_home-{other}.txt" in green_files(tmp_path)  # re-run on the live node
    assert not _running(f"sleep {mark}")  # the dead node's agent group went with it


def test_a_node_lost_mid_verification_blames_nobody_and_the_branch_is_verified_again(
    tmp_path: Path, ray_world: RayWorld,
) -> None:
    import sys

    from engine.gitops import GitRepo, MergeQueue
    from engine.models import MergeStatus
    from engine.store import Store

    home = ray_world.homes["w1"].parent / "home-w3"
    home.mkdir()
    node = ray_world.cluster.add_node(  # the only node with a verification slot
        num_cpus=1, object_store_memory=STORE_MB, resources={"mc_verify_slot": 1},
        env_vars={"HOME": str(home)})
    ray_world.cluster.wait_for_nodes()
    repo = make_target(tmp_path)
    GitRepo(repo).ensure_green("main")
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", "-b", "mc/unit/u1"], check=True)
    head = _commit(repo, {"app/more.py": "X = 1\n"}, "u1")
    started, mark = tmp_path / "started", f"{time.time_ns() % 10**9}.5"
    command = (f"if [ ! -e {started} ]; then basename $HOME > {started}; sleep {mark}; fi; "
               f"{sys.executable} -m unittest discover -s tests -t .")
    config = RayHostConfig(address=ray_world.cluster.address, verify=True, start_timeout=60,
                           verify_resource="mc_verify_slot")
    queue = MergeQueue(GitRepo(repo), Store(tmp_path / "mc.db"), mission_id=None,
                       verify_command=command, verify_timeout=120, batch_size=1,
                       verify_dir=tmp_path / "verify",
                       remote_verify=RayVerifier("cluster", config, repo))
    merge_id = queue.submit(None, "mc/unit/u1", head)

    def kill_when_started() -> None:
        deadline = time.monotonic() + 60
        while not (started.exists() and started.read_text().strip()) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        ray_world.cluster.remove_node(node, allow_graceful=False)

    watcher = threading.Thread(target=kill_when_started, daemon=True)
    watcher.start()
    first = anyio.run(queue.run_once)
    watcher.join(5)
    assert started.read_text().strip() == "home-w3"
    assert not first.promoted and not first.failed, first
    (row,) = queue.store.query("SELECT status, output FROM verifications")
    assert row["status"] == "error" and "lost during the verification" in row["output"], row
    assert queue.store.get("merges", merge_id)["status"] == MergeStatus.QUEUED  # not blamed
    assert GitRepo(repo).green_head() != head
    _gone(f"sleep {mark}")  # the lost node's verification group went with it
    # the next run goes to a live node (here: one with an agent slot)
    queue.verifier.remote = RayVerifier("cluster", config.model_copy(
        update={"verify_resource": ""}), repo)
    second = anyio.run(queue.run_once)
    assert [i.merge_id for i in second.promoted] == [merge_id], second
    assert queue.store.get("merges", merge_id)["status"] == MergeStatus.PROMOTED
