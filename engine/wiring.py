"""The wiring root: from a config, a store and a mission row to the :class:`Runtime` every
phase shares (repository, worktree pool, merge queue, LLM caller, agent backend)."""

from __future__ import annotations

from engine.agents import AgentBackend, AgentUnavailable, make_backend
from engine.config import MissionConfig, secret_env_names, unavailable_notes
from engine.dispatch import unit_branch
from engine.gitops import GitError, GitRepo, MergeQueue, WorkspacePool
from engine.gitops.branches import apply_base_branch
from engine.gitops.preflight import preflight
from engine.gitops.verify import RemoteVerify
from engine.host_config import host_names
from engine.hosts import HostFleet, check_hosts
from engine.ledger import UnitLedger
from engine.llm import LlmCaller
from engine.runtime import Runtime
from engine.speculation import speculation_slots
from engine.store import Store

INTERRUPTED_WORK_MESSAGE = (
    "wip: uncommitted work of an agent session a restart cut short (saved by mc)"
)


class MissionSetupError(RuntimeError):
    """The mission cannot start (bad repo, missing agent CLI, busy). Exit code 2."""


def check_target(
    config: MissionConfig, objective: str, backend: AgentBackend | None
) -> tuple[AgentBackend, GitRepo, list[str]]:
    """Everything that must hold before a mission may start: an objective, an available
    agent, a usable repository (mc/green exists, preflight passes). Returns the backend, the
    repository and preflight notes; raises :class:`MissionSetupError`."""
    if not objective.strip():
        raise MissionSetupError("target.objective is empty: say what the mission should achieve")
    backend = backend or make_backend(config)
    try:
        backend.check_available()
    except AgentUnavailable as exc:
        raise MissionSetupError(str(exc)) from None
    try:
        repo = GitRepo(config.target.path)
        repo.ensure_green(apply_base_branch(config, repo).name)
        notes = preflight(repo, config.worktree.include, "refs/heads/mc/green")
    except GitError as exc:
        raise MissionSetupError(str(exc)) from None
    if config.hosts:
        problem = hosts_problem(config)
        if problem:
            raise MissionSetupError(problem)
    return backend, repo, notes


def hosts_problem(config: MissionConfig) -> str | None:
    """Why no configured host can run an agent (each one's health check failed), or None."""
    if config.agent.permission_mode == "bypassPermissions":
        plain = [h.name or f"{h.kind}{i}" for i, h in enumerate(config.hosts) if h.kind != "sandbox"]
        if plain:
            return ("agent.permission_mode = bypassPermissions is allowed only inside a sandbox "
                    f"when [[hosts]] are configured; not on {', '.join(plain)} (docs/hosts.md)")
    fleet = HostFleet.from_config(config.hosts)
    check_hosts(fleet)
    if fleet.healthy():
        return None
    return "no host can run agents: " + "; ".join(
        f"{s.host.name}: {s.drained_reason}" for s in fleet.states)


def remote_verifier(config: MissionConfig, repo: GitRepo) -> RemoteVerify | None:
    """The merge queue's remote runner: the Ray host with ``verify = true``, if any
    (docs/hosts.md); verifications run locally otherwise."""
    for name, host in zip(host_names(config.hosts), config.hosts, strict=True):
        if host.kind == "ray" and host.verify:
            from engine.hosts.ray_verify import RayVerifier  # Ray is an optional extra

            return RayVerifier(name, host, repo.path, passthrough=config.agent.env_passthrough,
                               deny=secret_env_names(config))
    return None


def wire_runtime(
    config: MissionConfig, store: Store, *, backend: AgentBackend, repo: GitRepo,
    mission_id: int, objective: str, auto_approve: bool, notes: list[str],
) -> Runtime:
    """Build the mission's runtime (the process holds the mission lock): repair the pool,
    save a dead run's uncommitted work, reconcile the queue. Raises ``GitError``."""

    def log(message: str, level: str = "info") -> None:
        store.append_event("log", mission_id=mission_id, level=level, message=message)

    for note in repo.clear_stale_locks():  # safe: this process now holds the mission
        log(note)
    for note in unavailable_notes(config) + notes:
        log(note, "warning")
    if config.agent.backend == "command":
        log("agent.backend = command reports no cost: sessions count as $0 against "
            "the budget, so scheduler.budget cannot stop this mission", "warning")
    if config.agent.permission_mode == "bypassPermissions":
        log("agent.permission_mode = bypassPermissions: agents run with NO permission "
            "checks (any file, any command, .git included); you opted in", "warning")
    fleet = None
    if config.hosts:  # [[hosts]]: the slots are the hosts' (docs/hosts.md)
        fleet = HostFleet.from_config(config.hosts)
        for note in check_hosts(fleet):
            log(note, "warning")
        config = config.model_copy(update={"scheduler": config.scheduler.model_copy(update={
            "parallel": config.scheduler.parallel.model_copy(
                update={"num_workers": fleet.total_slots})})})
        for state in fleet.states:
            mode = getattr(state.host, "permission_mode", None)
            if state.host.kind == "sandbox" and mode == "bypassPermissions":
                log(f"host {state.host.name}: agents run with NO permission checks "
                    "(bypassPermissions) inside a bubblewrap sandbox: only their worktree "
                    "and the repository's objects and refs are writable", "warning")
        log("hosts: " + ", ".join(f"{s.host.name} ({s.host.kind}, {s.host.slots} slots"
                                  + (f", drained: {s.drained_reason})" if s.drained_reason else ")")
                                  for s in fleet.states))
    workers = config.scheduler.parallel.num_workers
    extra = config.green_branch.fixup_candidates + speculation_slots(config)  # beyond workers
    # a worktree outlives its agent's slot by one verification (a unit's precheck, a fixup
    # candidate's: num_workers run at once, Runtime.check_limiter; more may wait for it, and
    # then a new agent waits for a worktree until one ends); made when needed
    checks = workers
    pool = WorkspacePool(repo, config.pool_dir(), workers + extra + checks + 1,
                         include=config.worktree.include)
    continuing = {unit_branch(u.id) for u in UnitLedger(store).units(mission_id)
                  if u.resume_point == "continue"}
    if config.scheduler.parallel.pool_dir is None:  # our own old default: ours to move
        for note in pool.migrate_from(config.legacy_pool_dir(), continuing,
                                      INTERRUPTED_WORK_MESSAGE):
            log(note)
    for note in pool.save_uncommitted(continuing, INTERRUPTED_WORK_MESSAGE):
        log(note)
    for note in pool.repair():
        log(note)
    queue = MergeQueue(
        repo, store, mission_id=mission_id,
        verify_command=config.target.verification.command,
        verify_timeout=config.target.verification.timeout,
        batch_size=config.merge_queue.batch_size,
        speculative_depth=config.merge_queue.speculative_depth,
        verify_slots=config.merge_queue.verify_slots,
        verify_dir=config.pool_dir() / "verify",
        max_output_bytes=config.merge_queue.max_output_bytes,
        flaky_reruns=config.target.verification.flaky_reruns,
        include=config.worktree.include,
        units=UnitLedger(store),
        remote_verify=remote_verifier(config, repo),
    )
    if queue.verifier.remote is not None:
        log(f"merge queue: verifications run on {queue.verifier.remote.name} "
            "(hosts.*.verify = true)")
        if config.worktree.include:
            log("worktree.include files are not sent to Ray nodes for verification "
                "(they may hold secrets): the nodes' checkouts have tracked files only",
                "warning")
    for note in queue.reconcile():
        log(note)
    llm = LlmCaller(store, backend, config, mission_id=mission_id, workdir=repo.path)
    return Runtime(
        config=config, store=store, repo=repo, pool=pool, queue=queue, backend=backend,
        llm=llm, mission_id=mission_id, objective=objective, auto_approve=auto_approve,
        free_slots=set(range(workers + extra)), hosts=fleet,
    )
