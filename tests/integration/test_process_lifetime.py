"""Processes die with mc: the supervisor on its lifeline, and the resume sweep of orphans.

Real processes throughout: a host interpreter that starts agents the way mc does and is
then SIGKILLed, real process groups with grandchildren that ignore SIGTERM, and a real
store whose attempt rows record those processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest

from engine.agents.process import build_env, run_streaming
from engine.lifeline import ProcessIdentity, identify, start_ticks
from engine.orphans import ENDED, GONE, REUSED, end_orphans, is_ours
from engine.store import Store

ROOT = Path(__file__).resolve().parents[2]

# An agent that ignores SIGTERM and forks a grandchild that ignores it too; prints both pids.
STUBBORN = textwrap.dedent("""
    import os, signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = os.fork()
    if child == 0:
        time.sleep(300)
        os._exit(0)
    print('{"agent": %d, "grandchild": %d}' % (os.getpid(), child), flush=True)
    time.sleep(300)
""")

# A host process that starts STUBBORN the way mc does, then waits to be SIGKILLed.
# "direct": through run_streaming on the event loop (how agents start).
# "thread": Popen from a short-lived thread that ends while the agent runs; a parent-death
# signal set from the host would fire right then (it is thread-scoped), the lifeline not.
HOST = textwrap.dedent("""
    import subprocess, sys, threading, time
    import anyio
    sys.path.insert(0, {root!r})
    from engine.agents.process import build_env, run_streaming
    from engine.lifeline import supervised

    out, mode = sys.argv[1], sys.argv[2]
    argv = [sys.executable, "-c", {code!r}]

    if mode == "thread":
        def spawn():
            command, fds = supervised(argv, cwd=".", env=build_env(), grace=1.0)
            subprocess.Popen(command, stdout=open(out, "w"), pass_fds=fds,
                             start_new_session=True)
        thread = threading.Thread(target=spawn)
        thread.start()
        thread.join()
        open(out + ".thread-ended", "w").close()
        time.sleep(300)
    else:
        def on_line(line):
            with open(out, "a") as fh:
                fh.write(line.text + "\\n")
        anyio.run(lambda: run_streaming(argv, cwd=".", env=build_env(), on_line=on_line,
                                        kill_grace=1.0))
""")


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def start_host(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[bytes], Path]:
    out = tmp_path / "lines.txt"
    script = tmp_path / "host.py"
    script.write_text(HOST.format(root=str(ROOT), code=STUBBORN))
    host = subprocess.Popen([sys.executable, str(script), str(out), mode], cwd=tmp_path,
                            start_new_session=True)
    wait_for(lambda: out.exists() and "grandchild" in out.read_text(), 20, "the agent's pids")
    return host, out


def pids(out: Path) -> dict[str, int]:
    return json.loads(out.read_text().splitlines()[0])


def test_kill_9_of_mc_ends_the_agent_and_its_grandchild(tmp_path: Path) -> None:
    host, out = start_host(tmp_path, "direct")
    procs = pids(out)
    os.kill(host.pid, signal.SIGKILL)
    host.wait()
    # both ignore SIGTERM: the supervisor's grace (1 s) runs out and SIGKILL takes them
    try:
        wait_for(lambda: not any(alive(p) for p in procs.values()), 10,
                 "the agent and its grandchild to go")
    finally:
        for pid in procs.values():  # on failure, do not leave them behind
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_the_thread_that_spawned_the_agent_may_end_first(tmp_path: Path) -> None:
    """A parent-death signal is thread-scoped; the lifeline is process-scoped."""
    host, out = start_host(tmp_path, "thread")
    procs = pids(out)
    wait_for(lambda: Path(f"{out}.thread-ended").exists(), 10, "the spawning thread to end")
    time.sleep(0.5)
    assert all(alive(p) for p in procs.values()), "the agent died with the thread that spawned it"
    os.kill(host.pid, signal.SIGKILL)
    host.wait()
    wait_for(lambda: not any(alive(p) for p in procs.values()), 10, "the agent to go")


def test_exit_status_passes_through_the_supervisor(tmp_path: Path) -> None:
    async def run(code: str) -> int | None:
        outcome = await run_streaming([sys.executable, "-c", code], cwd=tmp_path,
                                      env=build_env(), on_line=lambda _: None, kill_grace=0.5)
        return outcome.exit_code

    assert anyio.run(run, "import sys; sys.exit(3)") == 3
    assert anyio.run(run, "import os, signal; os.kill(os.getpid(), signal.SIGTERM)") == -signal.SIGTERM
    assert anyio.run(run, "import signal; print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL,"
                     " signal.getsignal(signal.SIGPIPE) is signal.SIG_DFL)") == 0


def test_the_agent_sees_default_signals_and_no_lifeline(tmp_path: Path) -> None:
    lines: list[str] = []
    code = textwrap.dedent('''
        import os, signal
        print(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
              signal.getsignal(signal.SIGINT) == signal.default_int_handler,
              signal.getsignal(signal.SIGHUP) == signal.SIG_DFL,
              signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN)  # Python's own start-up
        fds = [int(fd) for fd in os.listdir("/proc/self/fd") if int(fd) > 2]
        print([fd for fd in fds if os.path.exists(f"/proc/self/fd/{fd}")
               and os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")])
    ''')
    anyio.run(lambda: run_streaming([sys.executable, "-c", code], cwd=tmp_path, env=build_env(),
                                    on_line=lambda line: lines.append(line.text)))
    assert lines[0] == "True True True True"
    assert json.loads(lines[1]) == []  # no pipe beyond stdout/stderr: the lifeline stays out


# ---------------------------------------------------------------------- the resume sweep


def stubborn_group(tmp_path: Path) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    """A process group like a dead run's agent: leader and grandchild ignore SIGTERM."""
    out = tmp_path / "group.json"
    code = STUBBORN.replace("print(", f"open({str(out)!r}, 'w').write(") \
        .replace(", flush=True)", ")")
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    wait_for(lambda: out.exists() and out.read_text().endswith("}"), 10, "the group")
    return proc, json.loads(out.read_text())


def store_with_attempt(tmp_path: Path, ident: ProcessIdentity) -> Store:
    store = Store(tmp_path / "mission.db")
    mission = store.insert("missions", {"objective": "x", "status": "running",
                                        "started_at": time.time()})
    store.insert("attempts", {
        "mission_id": mission, "role": "worker", "backend": "claude", "status": "running",
        "started_at": time.time(), "pid": ident.pid, "pgid": ident.pgid,
        "proc_start": ident.start_ticks, "boot_id": ident.boot_id,
    })
    return store


def test_resume_sweep_ends_a_dead_runs_group(tmp_path: Path) -> None:
    proc, procs = stubborn_group(tmp_path)
    ident = identify(proc.pid)
    assert ident.pgid == proc.pid and ident.start_ticks is not None
    store = store_with_attempt(tmp_path, ident)
    started = time.monotonic()
    notes = end_orphans(store, grace=0.5)
    proc.wait(timeout=5)
    assert not any(alive(p) for p in procs.values())
    assert time.monotonic() - started < 5
    assert len(notes) == 1 and "ended the process group" in notes[0] and "SIGKILL" in notes[0]
    logged = [json.loads(e["payload"]) for e in store.query(
        "SELECT payload FROM events WHERE kind = 'log'")]
    assert [e["verdict"] for e in logged] == [ENDED]
    assert end_orphans(store, grace=0.5) == []  # nothing left: nothing to say


def test_resume_sweep_leaves_a_reused_pid_alone(tmp_path: Path) -> None:
    proc, procs = stubborn_group(tmp_path)
    try:
        real = identify(proc.pid)
        recorded = ProcessIdentity(real.pid, real.pgid, real.start_ticks - 1, real.boot_id)
        assert is_ours(recorded) == REUSED
        store = store_with_attempt(tmp_path, recorded)
        notes = end_orphans(store, grace=0.5)
        assert len(notes) == 1 and "reused" in notes[0]
        assert all(alive(p) for p in procs.values())
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_resume_sweep_ends_members_whose_leader_is_gone(tmp_path: Path) -> None:
    out = tmp_path / "member.pid"
    code = (f"import os, signal, time\nif os.fork() == 0:\n"
            f"    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            f"    open({str(out)!r}, 'w').write(str(os.getpid()))\n    time.sleep(300)\n"
            f"else:\n    time.sleep(0.3)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    ident = ProcessIdentity(proc.pid, proc.pid, start_ticks(proc.pid), identify(proc.pid).boot_id)
    proc.wait(timeout=10)  # the leader is gone, its grandchild is not
    wait_for(out.exists, 5, "the member")
    member = int(out.read_text())
    assert alive(member)
    assert is_ours(ident) == ENDED
    store = store_with_attempt(tmp_path, ident)
    assert len(end_orphans(store, grace=0.3)) == 1
    wait_for(lambda: not alive(member), 5, "the member to go")
    assert is_ours(ident) == GONE


@pytest.mark.parametrize("field", ["boot_id", "start_ticks"])
def test_nothing_is_killed_without_proof(tmp_path: Path, field: str) -> None:
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        real = identify(proc.pid)
        value = {"boot_id": "another-boot", "start_ticks": None}[field]
        recorded = ProcessIdentity(real.pid, real.pgid, **{
            "start_ticks": real.start_ticks, "boot_id": real.boot_id, field: value})
        assert end_orphans(store_with_attempt(tmp_path, recorded), grace=0.3) == []
        assert alive(proc.pid)
    finally:
        proc.kill()
        proc.wait()
