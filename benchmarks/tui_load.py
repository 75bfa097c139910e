"""Load generator of ``bench_tui.py``: appends events to a mission store at a steady rate.

It writes what a busy mission writes, with the engine's own kinds and payload shapes:
``attempt.started`` for one worker attempt per slot (as ``engine/agents/recording.py``), then
``agent.event`` lines (``type`` text / tool_result, ``text``, ``tool``) and every tenth event a
``cost`` (``Store.add_cost``). ``tests/tui/test_fixture_drift.py`` checks the shapes against a
real scripted run.

Run: ``python benchmarks/tui_load.py --db PATH --mission ID --rate N --seconds S``; prints
``{"written": N, "seconds": S}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.store import Store  # noqa: E402

MODELS = ("sonnet", "opus")


def start_attempts(store: Store, mission_id: int, slots: int) -> list[int]:
    """One running worker attempt per slot, recorded as the engine records one."""
    out = []
    for slot in range(1, slots + 1):
        with store.transaction():
            attempt_id = int(store.insert("attempts", {
                "mission_id": mission_id, "unit_id": None, "role": "worker", "backend": "claude",
                "model": "sonnet", "slot": slot, "status": "running", "started_at": time.time(),
            }))
            store.append_event("attempt.started", mission_id=mission_id, unit_id=None,
                               attempt_id=attempt_id, role="worker", backend="claude",
                               model="sonnet", slot=slot)
        out.append(attempt_id)
    return out


def write_load(store: Store, mission_id: int, *, rate: float, seconds: float, slots: int = 4,
               batch: int = 50) -> int:
    """Append events at ``rate`` per second for ``seconds``; returns the number written.

    Agent events dominate, as in a real mission; every 10th event is a cost.
    """
    attempts = start_attempts(store, mission_id, slots)
    written = 0
    start = time.perf_counter()
    deadline = start + seconds
    n = 0
    while time.perf_counter() < deadline:
        with store.transaction():
            for _ in range(batch):
                n += 1
                slot = n % slots
                if n % 10 == 0:
                    store.add_cost(mission_id=mission_id, role="worker", usd=0.001, model=MODELS[n % 2],
                                   attempt_id=attempts[slot])
                else:
                    store.append_event("agent.event", mission_id=mission_id, unit_id=None,
                                       attempt_id=attempts[slot], slot=slot + 1,
                                       type="tool_result" if n % 3 else "text",
                                       text=f"event {n}\nsecond line", tool="Bash")
                written += 1
        target = start + written / rate
        pause = target - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/tui_load.py")
    parser.add_argument("--db", required=True)
    parser.add_argument("--mission", type=int, required=True)
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args(argv)
    store = Store(args.db)
    t0 = time.perf_counter()
    count = write_load(store, args.mission, rate=args.rate, seconds=args.seconds)
    print(json.dumps({"written": count, "seconds": round(time.perf_counter() - t0, 3)}))
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
