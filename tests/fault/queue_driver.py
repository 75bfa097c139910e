"""A merge-queue process for the fault-injection tests (run as a script, killed at will).

Usage: queue_driver.py TARGET STATE_DIR
Env MC_FAULT="step:phase:n[:delay]" makes it SIGKILL itself after the n-th journal
write of (step, phase), immediately or ``delay`` seconds later (to die *during* the
following step, e.g. while the verification command or ``git push`` runs).
Without MC_FAULT it reconciles, drains the queue, pushes, and prints a JSON summary.
Env MC_SPECULATIVE="batch_size:depth:slots" runs the speculative queue instead (batch 4,
depth 0 otherwise), with a verification where a tree holding BROKEN but not u4.txt
fails at once and every other one takes 0.3 s (so a candidate built on the culprit is
still running when the culprit fails: it is discarded).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import anyio

from engine.gitops import GitRepo, MergeQueue
from engine.gitops.publisher import Publisher
from engine.ledger import UnitLedger
from engine.store.db import Store

VERIFY = 'sleep 0.2; for f in BROKEN*; do [ -e "$f" ] && { echo "broken: $f"; exit 1; }; done; echo ok'
SPECULATIVE_VERIFY = ('if [ -e BROKEN ] && [ ! -e u4.txt ]; then echo "broken: BROKEN"; exit 1; fi; '
                      'sleep 0.3; for f in BROKEN*; do [ -e "$f" ] && { echo "broken: $f"; exit 1; }; '
                      'done; echo ok')


def fault_hook() -> Any:
    spec = os.environ.get("MC_FAULT")
    if not spec:
        return None
    step, phase, nth, *rest = spec.split(":")
    delay = float(rest[0]) if rest else 0.0
    seen = {"n": 0}

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def hook(s: str, p: str, data: dict[str, Any]) -> None:
        if (s, p) != (step, phase):
            return
        seen["n"] += 1
        if seen["n"] == int(nth):
            if delay:
                threading.Timer(delay, die).start()
            else:
                die()

    return hook


async def main(target: Path, state: Path) -> dict[str, Any]:
    repo = GitRepo(target)
    repo.ensure_green("main")
    store = Store(state / "mission.db")
    batch, depth, slots = 4, 0, 1
    if os.environ.get("MC_SPECULATIVE"):
        batch, depth, slots = (int(n) for n in os.environ["MC_SPECULATIVE"].split(":"))
    queue = MergeQueue(repo, store, mission_id=1,
                       verify_command=SPECULATIVE_VERIFY if depth else VERIFY, verify_timeout=30,
                       batch_size=batch, verify_dir=state / "verify", units=UnitLedger(store),
                       speculative_depth=depth, verify_slots=slots)
    queue.journal_hook = fault_hook()
    notes = queue.reconcile()
    runs = 0
    while queue.pending():
        await queue.run_once()
        runs += 1
    push = await Publisher(queue).push("origin", "main")
    return {"notes": notes, "runs": runs, "green": repo.green_head(), "push_ok": push.ok,
            "push_output": push.output}


if __name__ == "__main__":
    result = anyio.run(main, Path(sys.argv[1]), Path(sys.argv[2]))
    print(json.dumps(result))
