"""Fleet benchmark: the real engine and merge queue with a fleet of scripted agents.

A mission with 64 leaf units in a plan of depth 3 (4 parts x 4 sub-parts x 4 leaves, sibling
dependencies and file overlaps that the planner turns into dependency edges) runs on a real
temporary git repository through the real pipeline (``Controller``: planner, dispatch,
worktree pool, merge queue with batching and bisection, N-of-M fixup, promotion, store). The
agents are the scripted backend (``engine/agents/scripted.py``): each one sleeps for a
duration drawn from a log-normal distribution (median 2 s, sigma 0.75: a long tail; seeded),
then really writes its files and commits. Agents sleep rather than compute, so 32 of them on a
2-core machine are still a fleet of 32 (the machine's cores run only the engine, git and the
verification's shell).

* about 10 % of the units break the tests once (they commit ``broken/<unit>.flag``; the
  verification fails on it, the queue bisects and blames them, a fixup agent deletes it);
* about 15 % conflict: pairs of units that run side by side edit the same line of a file
  neither declared; whichever merges second conflicts and goes to fixup (the number that
  actually conflicted depends on the schedule and is printed);
* the verification command sleeps 1.5 s (then checks for the flags and conflict markers).

For 2, 8 and 32 workers it prints the makespan (mission start to the last promotion of
``mc/green``) against

* the lower bound ``max(critical path, total agent time / workers) + one verification``,
  computed from the sampled durations: the critical path is the longest chain of agent
  time through the dependency edges the engine actually enforced (read back from the store);
  a unit that breaks the tests needs a second (fixup) session, which counts in both terms;
  conflict fixups do not (a perfect schedule avoids them);
* the original tool's serial merge-then-verify: the same mission with
  ``[merge_queue] batch_size = 1``, ``speculative_depth = 0``, no precheck and no stacked
  branches: each branch merged and verified alone, a unit started once its dependencies
  merged.

and the engine's CPU time per unit (this process: controller, store, pygit2 merges; plus its
child processes: git, the verification's shell).

Goals (issue 17): makespan within 1.25x of the lower bound at 8 workers, and at least 2x
faster than serial at 8 workers. Makespans vary by a second or two from run to run on a
shared machine: ``--repeat N`` runs ours N times at 8 workers and judges the goal on their
median (``runs_at_goal_workers`` lists them).

    uv run python benchmarks/bench_fleet.py                 # ours at 2, 8, 32; serial at 8 (~5 min)
    uv run python benchmarks/bench_fleet.py --serial 2,8,32 # serial at every size too (~13 min)
    uv run python benchmarks/bench_fleet.py --quick         # 32 units, 8 workers, both queues (~2 min)
    uv run python benchmarks/bench_fleet.py --speculative-depth 2   # forwarded to [merge_queue]
    uv run python benchmarks/bench_fleet.py --workers 8 --serial '' --repeat 8  # a median of 8 runs

Every option that names a config key is only forwarded into the mission's config: a key the
engine does not know (yet) is reported as the config error it is. The default run takes about
5 minutes, half of it the serial baseline; ``--quick`` is the short one. Verification runs are
printed as the queue's (``verifications`` rows) plus those in agents' worktrees (prechecks,
fixup candidates).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._bench import git, report  # noqa: E402
from engine.config import ConfigError, MergeQueueConfig, load_config  # noqa: E402
from engine.controller import Controller  # noqa: E402
from engine.store import Store  # noqa: E402

PARTS = SUBS = LEAVES = 4
MEDIAN_S = 2.0
SIGMA = 0.75
VERIFY_S = 1.5
FAIL_SHARE = 0.10
CONFLICT_SHARE = 0.15
GOAL_BOUND_RATIO = 1.25
GOAL_SERIAL_RATIO = 2.0
FILLER_FILES = 300

VERIFY = (
    f"sleep {VERIFY_S}; "
    "if ls broken/*.flag >/dev/null 2>&1; then echo 'FAILED test_fleet (broken flag)'; exit 1; fi; "
    "if grep -rqs '^<<<<<<<' shared; then echo 'FAILED test_fleet (conflict markers)'; exit 1; fi; "
    "echo 'all tests passed'"
)
FIXUP = (
    "rm -rf broken; "
    "for f in shared/*.txt; do sed -i '/^<<<<<<<\\|^=======\\|^>>>>>>>/d' \"$f\"; done"
)


# --------------------------------------------------------------------------- the scenario
@dataclass
class Leaf:
    title: str
    path: str
    hints: list[str]
    deps: list[str] = field(default_factory=list)  # titles of sibling leaves
    work_s: float = 0.0
    fixup_s: float = 0.0
    breaks: bool = False
    hot: str | None = None  # the shared file a conflicting pair both edit


@dataclass
class Scenario:
    leaves: dict[str, Leaf]
    sub_deps: dict[str, list[str]]  # sub-part title -> sibling sub-part titles
    seed: int

    @property
    def units(self) -> int:
        return len(self.leaves)


def lognormal(rng: random.Random, median: float) -> float:
    return round(median * math.exp(rng.gauss(0.0, SIGMA)), 3)


def make_scenario(seed: int, *, parts: int = PARTS, fail_share: float = FAIL_SHARE,
                  conflict_share: float = CONFLICT_SHARE) -> Scenario:
    rng = random.Random(seed)
    leaves: dict[str, Leaf] = {}
    sub_deps: dict[str, list[str]] = {}
    for p in range(1, parts + 1):
        for s in range(1, SUBS + 1):
            for n in range(1, LEAVES + 1):
                title = f"Leaf {p}.{s}.{n}"
                path = f"src/p{p}/s{s}/leaf{n}.py"
                deps = [f"Leaf {p}.{s}.1"] if n == 4 else []  # "tests for it" after the code
                leaves[title] = Leaf(title, path, [path], deps,
                                     lognormal(rng, MEDIAN_S), lognormal(rng, MEDIAN_S))
        # part 1: its last sub-part builds on its first one (inherited by all their leaves)
        sub_deps[f"Sub {p}.4"] = [f"Sub {p}.1"] if p == 1 else []
    titles = list(leaves)
    # file overlaps: a leaf of one part and one of the next part both touch a common module
    for k in range(min(8, parts * 2)):
        a = titles[(k * 7) % len(titles)]
        b = titles[(k * 7 + SUBS * LEAVES) % len(titles)]
        common = f"src/common/registry{k}.py"
        for title in (a, b):
            leaves[title].hints.append(common)
    # conflicting pairs: two leaves with no dependencies that are dispatched side by side
    free = [t for t in titles if not leaves[t].deps and t.endswith((".2", ".3"))]
    pairs = round(conflict_share * len(titles))
    subs = sorted({t.rsplit(".", 1)[0] for t in free})
    rng.shuffle(subs)
    for j, sub in enumerate(subs[:pairs]):
        for title in (f"{sub}.2", f"{sub}.3"):
            leaves[title].hot = f"shared/hot{j}.txt"
    # units that break the tests once: never one of the conflicting pairs
    candidates = [t for t in titles if leaves[t].hot is None]
    for title in rng.sample(candidates, round(fail_share * len(titles))):
        leaves[title].breaks = True
    return Scenario(leaves, sub_deps, seed)


def toml_str(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid TOML basic string


def cassette(sc: Scenario) -> str:
    """Planner answers for every node of the depth-3 plan, one worker and one fixup entry per
    leaf (with its sampled durations), the ambition and objective checks."""
    out: list[str] = []

    def planner(match: str, units: list[dict[str, Any]]) -> None:
        answer = json.dumps({"rationale": "fleet benchmark", "units": units})
        out.append(f'[[interaction]]\nrole = "planner"\nmatch = {toml_str(match)}\n'
                   f"actions = [{{ type = \"text\", text = {toml_str(answer)} }}]\n")

    parts = sorted({t.split()[1].split(".")[0] for t in sc.leaves}, key=int)
    for p in parts:
        for s in range(1, SUBS + 1):
            sub = f"Sub {p}.{s}"
            units = [{"title": leaf.title, "description": "a unit of the fleet benchmark",
                      "files_hint": leaf.hints, "acceptance_criteria": ["tests pass"],
                      "dependencies": leaf.deps, "leaf": True}
                     for leaf in sc.leaves.values() if leaf.title.startswith(f"Leaf {p}.{s}.")]
            planner(f"- title: {sub}\n", units)
        planner(f"- title: Part {p}\n", [
            {"title": f"Sub {p}.{s}", "description": "a sub-part", "files_hint": [f"src/p{p}/s{s}/"],
             "acceptance_criteria": ["done"], "dependencies": sc.sub_deps.get(f"Sub {p}.{s}", []),
             "leaf": False} for s in range(1, SUBS + 1)])
    planner("Decompose the objective", [
        {"title": f"Part {p}", "description": "a part", "files_hint": [f"src/p{p}/"],
         "acceptance_criteria": ["done"], "leaf": False} for p in parts])
    out.append('[[interaction]]\nrole = "ambition"\n'
               "actions = [{ type = \"text\", text = '{\"score\": 9, \"feedback\": \"ok\"}' }]\n")
    out.append('[[interaction]]\nrole = "objective_check"\n'
               "actions = [{ type = \"text\", text = '{\"met\": true, \"feedback\": \"ok\"}' }]\n")
    for leaf in sc.leaves.values():
        actions = [f'{{ type = "sleep", seconds = {leaf.work_s} }}']
        for path in [leaf.path, *leaf.hints[1:]]:
            actions.append(f'{{ type = "write", path = {toml_str(path)}, '
                           f'content = {toml_str(f"# {leaf.title}" + chr(10))} }}')
        if leaf.hot:
            actions.append(f'{{ type = "write", path = {toml_str(leaf.hot)}, '
                           f'content = {toml_str(f"edited by {leaf.title}" + chr(10))} }}')
        if leaf.breaks:
            actions.append('{ type = "write", path = "broken/{{unit_id}}.flag", content = "x" }')
        actions.append('{ type = "commit", message = "{{unit_title}}" }')
        out.append(f'[[interaction]]\nrole = "worker"\nwhen = {{ unit_title = {toml_str(leaf.title)} }}\n'
                   f"actions = [{', '.join(actions)}]\n")
        fix = [f'{{ type = "sleep", seconds = {leaf.fixup_s} }}',
               f'{{ type = "run", command = {toml_str(FIXUP)} }}',
               '{ type = "commit", message = "fixup: {{unit_title}}" }']
        out.append(f'[[interaction]]\nrole = "fixup"\nwhen = {{ unit_title = {toml_str(leaf.title)} }}\n'
                   f"actions = [{', '.join(fix)}]\n")
    return "\n".join(out)


def make_repo(root: Path, sc: Scenario) -> Path:
    repo = root / "repo"
    for i in range(FILLER_FILES):
        path = repo / "lib" / f"mod{i % 10}" / f"m{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"VALUE_{i} = {i}\n")
    for leaf in sc.leaves.values():
        if leaf.hot:
            hot = repo / leaf.hot
            hot.parent.mkdir(parents=True, exist_ok=True)
            hot.write_text("the line both units of a pair edit\n")
    git(root, "init", "-q", "-b", "main", str(repo))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "generated")
    return repo


def config_text(workers: int, batch_size: int | None, queue_extra: dict[str, Any],
                precheck: bool | None = None, fixup_candidates: int | None = None,
                stacked: bool | None = None, siblings: bool | None = None) -> str:
    queue = {**({"batch_size": batch_size} if batch_size else {}), **queue_extra}
    queue_lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in queue.items())
    green = f"fixup_candidates = {fixup_candidates}" if fixup_candidates else ""
    return f"""
[target]
path = "repo"
objective = "fleet benchmark"
[target.verification]
command = '''{VERIFY}'''
timeout = 120
{"" if precheck is None else f"precheck = {json.dumps(precheck)}"}
[scheduler]
session_timeout = 600
{"" if stacked is None else f"stacked_branches = {json.dumps(stacked)}"}
{"" if siblings is None else f"stack_on_siblings = {json.dumps(siblings)}"}
[scheduler.parallel]
num_workers = {workers}
[planner]
max_depth = 3
max_children_per_node = 8
[continuous]
verify_objective_completion = true
[review]
gate_completion = false
[hitl]
enabled = false
[merge_queue]
{queue_lines}
[green_branch]
{green}
[agent]
backend = "scripted"
cassette = "cassette.toml"
"""


# --------------------------------------------------------------------------- the bounds
def critical_path(weights: dict[str, float], deps: dict[str, list[str]]) -> float:
    memo: dict[str, float] = {}

    def longest(key: str) -> float:
        if key not in memo:
            memo[key] = weights[key] + max((longest(d) for d in deps.get(key, [])), default=0.0)
        return memo[key]

    return max(longest(k) for k in weights)


def bounds(sc: Scenario, store: Store, mission_id: int, workers: int) -> dict[str, float]:
    """Lower bound from the sampled durations and the dependency edges the engine enforced."""
    leaves = [u for u in store.units(mission_id) if u["is_leaf"]]
    by_id = {u["id"]: u["title"] for u in leaves}
    weights = {}
    for u in leaves:
        leaf = sc.leaves[u["title"]]
        weights[u["title"]] = leaf.work_s + (leaf.fixup_s if leaf.breaks else 0.0)
    deps = {u["title"]: [by_id[d] for d in u["dependencies"] if d in by_id] for u in leaves}
    cp = critical_path(weights, deps)
    total = sum(weights.values())
    return {"critical_path_s": round(cp, 2), "agent_time_s": round(total, 2),
            "edges": sum(len(d) for d in deps.values()),
            "lower_bound_s": round(max(cp, total / workers) + VERIFY_S, 2)}


# --------------------------------------------------------------------------- one mission
def run_mission(sc: Scenario, workers: int, *, batch_size: int | None,
                queue_extra: dict[str, Any], precheck: bool | None = None,
                fixup_candidates: int | None = None,
                stacked: bool | None = None, siblings: bool | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mc-bench-fleet-") as tmp:
        root = Path(os.environ.get("MC_BENCH_FLEET_KEEP") or tmp)  # keep it to inspect it
        make_repo(root, sc)
        (root / "cassette.toml").write_text(cassette(sc))
        (root / "mission-control.toml").write_text(config_text(workers, batch_size, queue_extra,
                                                                     precheck, fixup_candidates,
                                                                     stacked, siblings))
        try:
            config = load_config(root / "mission-control.toml")
        except ConfigError as exc:
            raise SystemExit(f"bench_fleet: the engine refused the config: {exc}") from None
        store = Store(config.db_path())
        controller = Controller(config, store)
        cpu0, kids0 = time.process_time(), _children_cpu()
        t0 = time.time()
        outcome = anyio.run(controller.run)
        t_end = time.time()
        cpu = time.process_time() - cpu0
        kids = _children_cpu() - kids0
        mid = outcome.mission_id
        leaves = [u for u in store.units(mid) if u["is_leaf"]]
        merged = sum(1 for u in leaves if u["status"] == "merged")
        if outcome.status != "completed" or merged != sc.units:
            failed = [(u["title"], u["status"], (u["reason"] or "")[:200]) for u in leaves
                      if u["status"] != "merged"]
            raise SystemExit(f"bench_fleet: mission ended {outcome.status} ({outcome.reason}); "
                             f"{merged}/{sc.units} merged; not merged: {failed[:5]}")
        stats = mission_stats(store, mid, t0, workers)
        stats["critical_chain_s"] = critical_chain(store, mid)
        stats.update(bounds(sc, store, mid, workers))
        stats.update(workers=workers, batch_size=batch_size or config.merge_queue.batch_size,
                     mission_s=round(t_end - t0, 2), load=round(os.getloadavg()[0], 1),
                     engine_cpu_ms_per_unit=round(cpu * 1000 / sc.units, 1),
                     child_cpu_ms_per_unit=round(kids * 1000 / sc.units, 1))
        store.close()
        return stats


def _children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


def mission_stats(store: Store, mid: int, t0: float, workers: int) -> dict[str, Any]:
    """Makespan and where the time went, from the store's rows and events."""
    promos = store.query("SELECT ts FROM events WHERE mission_id = ? AND kind = 'green.promoted' "
                         "ORDER BY ts", (mid,))
    makespan = promos[-1]["ts"] - t0
    verifs = store.query("SELECT batch_id, duration_s, started_at, ended_at, status FROM verifications "
                         "WHERE mission_id = ?", (mid,))
    queue_v = [v for v in verifs if v["batch_id"] and v["batch_id"] != "baseline"]
    baseline = [v for v in verifs if v["batch_id"] == "baseline"]
    merges = store.query("SELECT status, COUNT(*) AS n FROM merges WHERE mission_id = ? "
                         "GROUP BY status", (mid,))
    statuses = {m["status"]: m["n"] for m in merges}
    attempts = store.query("SELECT role, started_at, ended_at FROM attempts WHERE mission_id = ?",
                           (mid,))
    worker_att = [a for a in attempts if a["role"] != "fixup" and a["ended_at"]]
    first_dispatch = min((a["started_at"] for a in worker_att), default=t0)
    last_agent = max((a["ended_at"] for a in worker_att), default=t0)
    busy = sum(a["ended_at"] - a["started_at"] for a in worker_att)
    # dispatch latency: from a leaf becoming ready (after planning) to its agent starting
    events = store.query("SELECT ts, unit_id, payload FROM events WHERE mission_id = ? AND "
                         "kind = 'unit.status'", (mid,))
    ready: dict[str, float] = {}
    waits: list[float] = []
    queue_waits: list[float] = []
    queued: dict[str, float] = {}
    for e in events:
        to = json.loads(e["payload"]).get("to")
        if to == "ready" and e["unit_id"] not in ready:
            ready[e["unit_id"]] = e["ts"]
        elif to == "running" and e["unit_id"] in ready:
            waits.append(e["ts"] - ready.pop(e["unit_id"]))
        elif to == "queued":
            queued[e["unit_id"]] = e["ts"]
        elif to == "merged" and e["unit_id"] in queued:
            queue_waits.append(e["ts"] - queued.pop(e["unit_id"]))
    return {
        "makespan_s": round(makespan, 2),
        "to_first_dispatch_s": round(first_dispatch - t0, 2),
        "last_agent_end_to_last_promotion_s": round(promos[-1]["ts"] - last_agent, 2),
        "worker_utilisation": round(busy / (workers * max(last_agent - first_dispatch, 1e-9)), 2),
        "baseline_verifications": len(baseline),
        "verifications": len(queue_v),
        # the verification runs outside the queue: units' prechecks, fixup candidates'
        "worktree_verifications": _worktree_checks(store, mid),
        "verify_busy_s": round(sum(v["duration_s"] or 0 for v in queue_v), 1),
        "verify_busy_share": round(sum(v["duration_s"] or 0 for v in queue_v) / makespan, 2),
        "promotions": len(promos),
        "merges_by_status": statuses,
        "fixup_sessions": sum(1 for a in attempts if a["role"] == "fixup"),
        "wait_ready_to_running_s_median": round(statistics.median(waits), 2) if waits else None,
        "queued_to_merged_s_median": round(statistics.median(queue_waits), 2) if queue_waits else None,
        "queued_to_merged_s_max": round(max(queue_waits), 2) if queue_waits else None,
    }


def _worktree_checks(store: Store, mid: int) -> int:
    """Verification runs in agents' worktrees: one per precheck (plus its flaky re-runs,
    not told apart in the event) and per fixup candidate that reached its verification."""
    rows = store.query("SELECT kind, payload FROM events WHERE mission_id = ? AND kind IN "
                       "('unit.prechecked', 'fixup.candidate')", (mid,))
    return sum(1 for r in rows if r["kind"] == "unit.prechecked"
               or "error" not in json.loads(r["payload"]))


def critical_chain(store: Store, mid: int) -> dict[str, Any]:
    """Where the makespan went along the critical chain: from the last leaf to merge, back
    through the dependency that merged last, to a leaf with none. Per segment (seconds,
    summed over the chain): READY to its agent running (``dispatch``), the worker's agent session,
    agent done to its first queued/fixup (``precheck``), first to last queued (a fixup
    detour: conflict or culprit), last queued to merged (``queue``). ``queue_before_last``:
    the queue time of every link but the last, which is what starting a dependent from its
    dependencies' queued candidates instead of from ``mc/green`` could save at most."""
    leaves = {u["id"]: u for u in store.units(mid) if u["is_leaf"]}
    moves: dict[str, list[tuple[float, str]]] = {}
    for e in store.query("SELECT ts, unit_id, payload FROM events WHERE mission_id = ? AND "
                         "kind = 'unit.status' ORDER BY id", (mid,)):
        moves.setdefault(e["unit_id"], []).append((e["ts"], json.loads(e["payload"]).get("to")))
    agent = {a["unit_id"]: (a["started_at"], a["ended_at"]) for a in store.query(
        "SELECT unit_id, started_at, ended_at FROM attempts WHERE mission_id = ? AND "
        "role = 'worker' AND ended_at IS NOT NULL ORDER BY started_at", (mid,))}

    def at(uid: str, to: str, pick: Any = min) -> float:
        return pick(ts for ts, s in moves[uid] if s == to)

    seg = dict.fromkeys(("dispatch", "agent", "precheck", "fixup_detour", "queue"), 0.0)
    chain: list[str] = []
    queues: list[float] = []
    uid: str | None = max(leaves, key=lambda u: at(u, "merged", max))
    while uid:
        chain.append(leaves[uid]["title"])
        a0, a1 = agent[uid]
        ready = max(ts for ts, s in moves[uid] if s == "ready" and ts <= a0)
        first_q = min(ts for ts, s in moves[uid] if s in ("queued", "fixup") and ts >= a1)
        last_q, merged = at(uid, "queued", max), at(uid, "merged", max)
        seg["dispatch"] += a0 - ready  # READY to its agent running
        seg["agent"] += a1 - a0
        seg["precheck"] += first_q - a1
        seg["fixup_detour"] += last_q - first_q
        seg["queue"] += merged - last_q
        queues.append(merged - last_q)
        deps = [d for d in leaves[uid]["dependencies"] if d in leaves]
        uid = max(deps, key=lambda d: at(d, "merged", max)) if deps else None
    return {"chain": list(reversed(chain)), **{k: round(v, 2) for k, v in seg.items()},
            "queue_before_last": round(sum(queues[1:]), 2)}


def show(label: str, r: dict[str, Any]) -> None:
    print(f"{label:6s} {r['workers']:2d} workers batch={r['batch_size']}: makespan {r['makespan_s']:6.1f}s"
          f" | bound {r['lower_bound_s']:5.1f}s (cp {r['critical_path_s']:.1f}s over {r['edges']} edges, agent time "
          f"{r['agent_time_s']:.0f}s/{r['workers']}) = {r['makespan_s'] / r['lower_bound_s']:.2f}x"
          f" | {r['verifications']} verifications in the queue ({r['verify_busy_share']:.0%} of "
          f"the makespan in verification-seconds) + {r['worktree_verifications']} in worktrees, "
          f"merges {r['merges_by_status']}, {r['fixup_sessions']} fixup sessions"
          f" | engine CPU {r['engine_cpu_ms_per_unit']} ms/unit (+{r['child_cpu_ms_per_unit']} ms "
          f"in git/shell children)", flush=True)
    print("       " + json.dumps({k: r[k] for k in (
        "to_first_dispatch_s", "worker_utilisation", "wait_ready_to_running_s_median",
        "queued_to_merged_s_median", "queued_to_merged_s_max",
        "last_agent_end_to_last_promotion_s", "mission_s", "load")}), flush=True)
    print("       critical chain " + json.dumps(r["critical_chain_s"]), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", default="2,8,32", help="worker counts for our queue")
    ap.add_argument("--serial", default="8", help="worker counts for the serial baseline ('' = none)")
    ap.add_argument("--quick", action="store_true",
                    help="32 units (2 parts), 8 workers only, ours and serial")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--fail-share", type=float, default=FAIL_SHARE,
                    help="share of units that break the tests once")
    ap.add_argument("--conflict-share", type=float, default=CONFLICT_SHARE,
                    help="share of conflict-prone pairs (per unit)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="[merge_queue] batch_size for ours (default: the engine's default)")
    ap.add_argument("--speculative-depth", type=int, default=None,
                    help="forwarded as [merge_queue] speculative_depth (when the engine has it)")
    ap.add_argument("--precheck", choices=("true", "false"), default=None,
                    help="[target.verification] precheck for ours (default: the engine's, "
                    "true); serial never prechecks")
    ap.add_argument("--fixup-candidates", type=int, default=None,
                    help="[green_branch] fixup_candidates for ours (default: the engine's, 3)")
    ap.add_argument("--stacked-branches", choices=("true", "false"), default=None,
                    help="[scheduler] stacked_branches for ours (default: the engine's)")
    ap.add_argument("--stack-on-siblings", choices=("true", "false"), default=None,
                    help="[scheduler] stack_on_siblings for ours (default: the engine's)")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="run ours N times at the goal's worker count (8); 'ours' is the median "
                    "and the goal is judged on it (a goal met 'reliably' is a median that meets it)")
    ap.add_argument("--queue-option", action="append", default=[], metavar="KEY=JSON",
                    help="any other [merge_queue] key, forwarded as is (repeatable)")
    args = ap.parse_args()
    workers = [8] if args.quick else [int(w) for w in args.workers.split(",") if w]
    serial = [8] if args.quick else [int(w) for w in args.serial.split(",") if w]
    if not workers:
        ap.error("--workers: name at least one worker count")
    if args.repeat < 1:
        ap.error("--repeat: at least 1")
    extra: dict[str, Any] = {}
    if args.speculative_depth is not None:
        extra["speculative_depth"] = args.speculative_depth
    for item in args.queue_option:
        key, _, value = item.partition("=")
        extra[key] = json.loads(value)

    sc = make_scenario(args.seed, parts=2 if args.quick else PARTS, fail_share=args.fail_share,
                       conflict_share=args.conflict_share)
    breaks = sum(leaf.breaks for leaf in sc.leaves.values())
    hot = sum(1 for leaf in sc.leaves.values() if leaf.hot)
    works = [leaf.work_s for leaf in sc.leaves.values()]
    print(f"scenario: {sc.units} units, depth 3, seed {sc.seed}; agent durations median "
          f"{statistics.median(works):.2f}s mean {statistics.mean(works):.2f}s max {max(works):.1f}s; "
          f"{breaks} break the tests once, {hot} in {hot // 2} conflict-prone pairs; verification "
          f"{VERIFY_S}s", flush=True)
    ours: dict[int, dict[str, Any]] = {}
    base: dict[int, dict[str, Any]] = {}
    def run_ours(w: int) -> dict[str, Any]:
        result = run_mission(sc, w, batch_size=args.batch_size, queue_extra=extra,
                             precheck=None if args.precheck is None else args.precheck == "true",
                             fixup_candidates=args.fixup_candidates,
                             stacked=None if args.stacked_branches is None
                             else args.stacked_branches == "true",
                             siblings=None if args.stack_on_siblings is None
                             else args.stack_on_siblings == "true")
        show("ours", result)
        return result

    for w in workers:
        ours[w] = run_ours(w)
    # the original tool: one branch merged and verified at a time, nothing speculative
    plain = {"speculative_depth": 0} if "speculative_depth" in MergeQueueConfig.model_fields else {}
    for w in serial:
        base[w] = run_mission(sc, w, batch_size=1, queue_extra=plain, precheck=False,
                              stacked=False, siblings=False)
        show("serial", base[w])

    goal_w = 8 if 8 in ours else workers[0]
    r = ours[goal_w]
    runs = [r["makespan_s"]] + [run_ours(goal_w)["makespan_s"] for _ in range(args.repeat - 1)]
    makespan = statistics.median(runs)
    bound_ratio = makespan / r["lower_bound_s"]
    serial_ratio = base[goal_w]["makespan_s"] / makespan if goal_w in base else None
    report(
        f"fleet_makespan_{sc.units}_units", ours=makespan, baseline=r["lower_bound_s"], unit="s",
        goal_met=bound_ratio <= GOAL_BOUND_RATIO and (serial_ratio or 0) >= GOAL_SERIAL_RATIO,
        workers=goal_w, bound_ratio=round(bound_ratio, 2), goal_bound_ratio=GOAL_BOUND_RATIO,
        serial_s=base[goal_w]["makespan_s"] if goal_w in base else None,
        speedup_vs_serial=round(serial_ratio, 2) if serial_ratio else None,
        goal_speedup_vs_serial=GOAL_SERIAL_RATIO,
        makespan_s={str(w): v["makespan_s"] for w, v in ours.items()},
        runs_at_goal_workers=runs if args.repeat > 1 else None,
        lower_bound_s={str(w): v["lower_bound_s"] for w, v in ours.items()},
        serial_makespan_s={str(w): v["makespan_s"] for w, v in base.items()},
        engine_cpu_ms_per_unit={str(w): v["engine_cpu_ms_per_unit"] for w, v in ours.items()},
        verifications={str(w): v["verifications"] for w, v in ours.items()},
        worktree_verifications={str(w): v["worktree_verifications"] for w, v in ours.items()},
        batch_size=args.batch_size, units=sc.units, seed=sc.seed, queue_options=extra or None,
        precheck=args.precheck,
        fixup_candidates=args.fixup_candidates, stack_on_siblings=args.stack_on_siblings,
        load_average=[round(x, 2) for x in os.getloadavg()],
    )


if __name__ == "__main__":
    main()
