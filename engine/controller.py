"""``Controller``: the façade the hosts (CLI, TUI, benchmarks) and tests drive.

The work lives in small modules (``docs/architecture.md``): :mod:`engine.runner` (the
mission lifecycle), :mod:`engine.wiring` (the runtime), :mod:`engine.pipeline` (the epoch
phases, stop policy, command inbox) and :mod:`engine.plugins` (observers and hooks; the
circuit breaker is the built-in ``circuit_breaker`` plugin).
"""

from __future__ import annotations

from engine.mission import MissionOutcome
from engine.pipeline.assess import verify_baseline
from engine.pipeline.state import EpochResult, MissionState, Stop, leaf_exceptions, leaf_tally
from engine.resilience.breaker import CircuitBreaker
from engine.runner import EXIT_CODES, MissionRunner, run_mission
from engine.runtime import Runtime
from engine.wiring import INTERRUPTED_WORK_MESSAGE, MissionSetupError

__all__ = [
    "EXIT_CODES", "INTERRUPTED_WORK_MESSAGE", "Controller", "EpochResult", "MissionOutcome",
    "MissionSetupError", "leaf_exceptions", "leaf_tally", "run_mission",
]


class Controller(MissionRunner):
    """A :class:`~engine.runner.MissionRunner` with the views tests and hosts read."""

    @property
    def breaker(self) -> CircuitBreaker | None:
        """The circuit breaker of the built-in ``circuit_breaker`` plugin (None: off)."""
        return getattr(self.plugins.get("circuit_breaker"), "breaker", None)

    def _dispatch_limit(self, workers: int) -> int:
        return self.plugins.dispatch_limit(workers)

    def _single_pass(self) -> bool:
        return self.plugins.worker_options({}).single_pass

    async def _baseline(self, rt: Runtime) -> Stop | None:
        assert self.state is not None and self.state.rt is rt
        return await verify_baseline(self.state)

    @property
    def mission_state(self) -> MissionState | None:
        return self.state
