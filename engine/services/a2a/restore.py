"""Tasks that outlive the server: a restarted ``mc a2a`` still knows its tasks' missions.

Tasks live in the SDK's in-memory store while the server runs; their missions run in their own
processes and go on when the server stops. :class:`RestoringTaskStore` answers for a task the
memory does not hold from its link (:class:`~engine.services.a2a.tasks.TaskMap`) and its
mission's row: the state the mission is in now. A reply on such a task follows the mission
again from where the task's reports stopped; :class:`MissionRequestHandler` makes a cancel of
it stop the mission first, as for a live task.
"""

from __future__ import annotations

import asyncio

from a2a.helpers import new_text_part
from a2a.server.agent_execution.active_task import TERMINAL_TASK_STATES
from a2a.server.context import ServerCallContext
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.tasks import InMemoryTaskStore
from a2a.types import CancelTaskRequest, Message, Role, Task, TaskState, TaskStatus
from a2a.utils.errors import TaskNotCancelableError, TaskNotFoundError

from engine.models import MissionStatus
from engine.services.a2a.executor import COMPLETED_MISSION, USER_STOP_REASON, MissionExecutor
from engine.services.a2a.projects import (
    ACTIVE_MISSION,
    ProjectError,
    describe_status,
    mission_status,
)


def mission_task_state(status: str, outcome: str | None, pending_approvals: int) -> TaskState:
    """The A2A state a mission in ``status`` means for its task."""
    if status in COMPLETED_MISSION:
        return TaskState.TASK_STATE_COMPLETED
    if status == MissionStatus.STOPPED and outcome == USER_STOP_REASON:
        return TaskState.TASK_STATE_CANCELED
    if status in ACTIVE_MISSION:
        return (TaskState.TASK_STATE_INPUT_REQUIRED if pending_approvals
                else TaskState.TASK_STATE_WORKING)
    return TaskState.TASK_STATE_FAILED


class RestoringTaskStore(InMemoryTaskStore):
    """The SDK's in-memory store, falling back to the task's mission for tasks it lost."""

    def __init__(self, executor: MissionExecutor) -> None:
        super().__init__()
        self.executor = executor

    async def get(self, task_id: str, context: ServerCallContext) -> Task | None:
        task = await super().get(task_id, context)
        if task is not None:
            return task
        return await asyncio.to_thread(self._restore, task_id)

    async def held(self, task_id: str, context: ServerCallContext) -> bool:
        """Whether the memory holds the task (False: unknown, or restored from its link)."""
        return await super().get(task_id, context) is not None

    def _restore(self, task_id: str) -> Task | None:
        link = self.executor.tasks.get(task_id)
        if link is None:
            return None
        try:
            store = self.executor.projects.get(link.project).store()
        except ProjectError:
            return None
        if store is None:
            return None
        with store:
            try:
                status = mission_status(store, link.mission_id)
            except KeyError:
                return None
        state = mission_task_state(status["status"], status["outcome"],
                                   len(status["pending_approvals"]))
        note = Message(role=Role.ROLE_AGENT, message_id=f"restored-{task_id}",
                       task_id=task_id, context_id=link.context_id,
                       parts=[new_text_part(f"project {link.project}\n{describe_status(status)}")])
        return Task(id=task_id, context_id=link.context_id,
                    status=TaskStatus(state=state, message=note))


class MissionRequestHandler(DefaultRequestHandler):
    """The SDK's handler; a cancel of a task this server process never held (restored after
    a restart) stops its mission, waits until it stopped, then marks the task canceled."""

    def __init__(self, *, agent_executor: MissionExecutor, task_store: RestoringTaskStore,
                 **kwargs: object) -> None:
        super().__init__(agent_executor=agent_executor, task_store=task_store,
                         **kwargs)  # type: ignore[arg-type]
        self.missions = agent_executor
        self.restoring = task_store

    async def on_cancel_task(self, params: CancelTaskRequest,
                             context: ServerCallContext) -> Task | None:
        if await self.restoring.held(params.id, context):
            return await super().on_cancel_task(params, context)
        task = await self.restoring.get(params.id, context)
        if task is None:
            raise TaskNotFoundError
        if task.status.state in TERMINAL_TASK_STATES:
            raise TaskNotCancelableError
        note = await self.missions.stop_linked_mission(params.id)
        task = await self.restoring.get(params.id, context)
        assert task is not None
        task.status.state = TaskState.TASK_STATE_CANCELED
        if note:
            task.status.message.parts[0].text = note
        await self.restoring.save(task, context)
        return task
