"""The command inbox: pause / resume / stop rows another process (or the hosting TUI)
wrote into ``commands``, taken on every tick of the engine."""

from __future__ import annotations

from engine.models import CommandKind, MissionStatus
from engine.pipeline.state import MissionState


class CommandInbox:
    def __init__(self, state: MissionState) -> None:
        self.state = state

    def take(self) -> None:
        """Obey the pending commands (in the order written)."""
        state, rt = self.state, self.state.rt
        for command in state.store.take_commands(rt.mission_id):
            kind = command["kind"]
            if kind == CommandKind.PAUSE and not state.paused:
                state.paused = True
                state.store.set_status("missions", rt.mission_id, MissionStatus.PAUSED,
                                       reason="paused")
            elif kind == CommandKind.RESUME and state.paused:
                state.paused = False
                state.store.set_status("missions", rt.mission_id, MissionStatus.RUNNING,
                                       reason="resumed")
            elif kind == CommandKind.STOP:
                state.request_stop("stopped by the user")
