"""Store write rate: how many events per second the mission store (SQLite, WAL) sustains.

The engine writes one ``events`` row per state change and per (coalesced) agent event,
each ``Store.append_event`` its own transaction unless it is part of a larger one, from the
event loop's thread (docs/architecture.md). Four figures, on a real store in a temporary
folder (this machine's disk):

* ``append``: one writer appending ``agent.event`` rows shaped like the recorder's (~300
  bytes of JSON), one transaction each: events/s and the p50 / p99 / max time one write holds
  the caller (the event loop, in the engine);
* ``status``: ``Store.set_status`` on unit rows (read, check the transition, update, event:
  one transaction): changes/s;
* ``threads``: four threads appending at once (the loop plus worker threads), while a fifth
  follows the table the way ``mc dashboard`` and ``mc live`` do (``events_after`` every 50 ms):
  events/s in total;
* ``processes``: two processes appending to the same file (a second mc process on the store:
  commands, approvals from ``mc approve``), events/s in total.

The baseline is an estimate of what 400 agents ask of the store at their busiest: 5 rows/s
each (text flushed every 0.2 s while an agent streams; tool calls are rarer) = 2,000 events/s,
plus the engine's own (under 40 events per unit, a unit every few seconds). Goal: the single
writer sustains it with p99 write time under 10 ms.

    uv run python benchmarks/bench_store.py          # about 30 s
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._bench import report  # noqa: E402
from engine.store import Store  # noqa: E402

N_APPEND = 20_000
N_STATUS = 3_000
N_THREAD = 5_000
N_PROCESS = 5_000
DEMAND_EVENTS_S = 400 * 5.0
GOAL_P99_MS = 10.0
TEXT = ("Reading src/auth/login.py to see how the session token is checked before the "
        "redirect; the helper in src/auth/tokens.py does the signature check. ") * 2


def payload(i: int) -> dict[str, object]:
    return {"attempt_id": i % 64, "slot": i % 32, "type": "text", "text": TEXT, "tool": None}


def mission(store: Store) -> int:
    return int(store.insert("missions", {"objective": "bench", "status": "running",
                                         "started_at": time.time()}))


def bench_append(path: Path) -> dict[str, float]:
    store = Store(path)
    mid = mission(store)
    times = []
    t0 = time.perf_counter()
    for i in range(N_APPEND):
        s = time.perf_counter()
        store.append_event("agent.event", mission_id=mid, unit_id=f"u{i % 64}", **payload(i))
        times.append(time.perf_counter() - s)
    wall = time.perf_counter() - t0
    store.close()
    times.sort()
    return {"events_per_s": round(N_APPEND / wall), "p50_ms": round(times[len(times) // 2] * 1e3, 3),
            "p99_ms": round(times[int(len(times) * 0.99)] * 1e3, 3),
            "max_ms": round(times[-1] * 1e3, 2)}


def bench_status(path: Path) -> dict[str, float]:
    store = Store(path)
    mid = mission(store)
    now = time.time()
    with store.transaction():
        for i in range(N_STATUS):
            store.insert("units", {"id": f"s{i}", "mission_id": mid, "title": f"unit {i}",
                                   "status": "planned", "created_at": now, "updated_at": now})
    t0 = time.perf_counter()
    for i in range(N_STATUS):
        store.set_status("units", f"s{i}", "ready")
    wall = time.perf_counter() - t0
    store.close()
    return {"changes_per_s": round(N_STATUS / wall)}


def bench_threads(path: Path) -> dict[str, float]:
    store = Store(path)
    mid = mission(store)
    done = threading.Event()
    seen = [0]
    start_id = store.last_event_id()  # before any writer starts: the follower misses none

    def writer(k: int) -> None:
        for i in range(N_THREAD):
            store.append_event("agent.event", mission_id=mid, unit_id=f"t{k}", **payload(i))

    def follower() -> None:
        reader = Store(path, readonly=True)
        last = start_id
        while True:
            finished = done.is_set()
            events = reader.events_after(last)
            while events:
                last = events[-1].id
                seen[0] += len(events)
                events = reader.events_after(last) if finished else []
            if finished:
                break
            time.sleep(0.05)
        reader.close()

    follow = threading.Thread(target=follower)
    follow.start()
    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    done.set()
    follow.join()
    store.close()
    return {"events_per_s": round(4 * N_THREAD / wall), "followed": seen[0]}


def _process_writer(path: str, k: int, start: float) -> None:
    store = Store(path)
    while time.time() < start:
        time.sleep(0.001)
    for i in range(N_PROCESS):
        store.append_event("agent.event", mission_id=1, unit_id=f"p{k}", **payload(i))
    store.close()


def bench_processes(path: Path) -> dict[str, float]:
    store = Store(path)
    mission(store)
    store.close()
    start = time.time() + 0.5
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_process_writer, args=(str(path), k, start)) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    wall = time.time() - start
    if any(p.exitcode for p in procs):
        raise SystemExit("bench_store: a writer process failed")
    return {"events_per_s": round(2 * N_PROCESS / wall)}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mc-bench-store-") as tmp:
        root = Path(tmp)
        results = {
            "append": bench_append(root / "append.db"),
            "status": bench_status(root / "status.db"),
            "threads": bench_threads(root / "threads.db"),
            "processes": bench_processes(root / "processes.db"),
        }
    for name, r in results.items():
        print(f"{name:9s} {json.dumps(r)}", flush=True)
    a = results["append"]
    report(
        "store_write_rate", ours=a["events_per_s"], baseline=DEMAND_EVENTS_S, unit="events/s",
        higher_is_better=True,
        goal_met=a["events_per_s"] >= DEMAND_EVENTS_S and a["p99_ms"] < GOAL_P99_MS,
        append_p99_ms=a["p99_ms"], append_max_ms=a["max_ms"],
        status_changes_per_s=results["status"]["changes_per_s"],
        four_threads_events_per_s=results["threads"]["events_per_s"],
        two_processes_events_per_s=results["processes"]["events_per_s"],
        demand_estimate="400 agents x 5 rows/s", goal_p99_ms=GOAL_P99_MS,
    )


if __name__ == "__main__":
    main()
