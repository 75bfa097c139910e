"""The A2A agent executor: a "run a mission" task follows its mission through the store.

``execute`` starts ``mc mission --no-ui`` detached for the project, links the task to the
mission (:class:`~engine.services.a2a.tasks.TaskMap`) and turns the mission's events into task
status updates until the mission ends (artifacts: the report summary and the JSON report). A
pending approval parks the task in ``input-required``; a reply on the task ("approve" or
"deny") decides it and the task follows the mission again. ``cancel`` asks the mission to stop
through the store's commands table and ends the task ``canceled`` once the mission stopped.
"mission status" is answered at once with a message (text and data parts), no task.

Reading requests is ``requests.py``; what each store event means for the task is
``updates.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from typing import Any

from a2a.helpers import (
    new_data_artifact,
    new_data_part,
    new_task,
    new_text_artifact,
    new_text_part,
)
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types import Message, Role, TaskState

from engine.models import Event, MissionStatus
from engine.report import build_report
from engine.services.a2a.projects import (
    ACTIVE_MISSION,
    START_TIMEOUT_S,
    LaunchedMission,
    MissionStartError,
    Project,
    ProjectError,
    Projects,
    decide_pending,
    describe_status,
    launch_mission,
    mission_of_process,
    mission_status,
    request_stop,
)
from engine.services.a2a.requests import (
    MISSION_STATUS,
    RUN_MISSION,
    RequestError,
    SkillRequest,
    parse_decision,
    parse_request,
)
from engine.services.a2a.tasks import TaskLink, TaskMap
from engine.services.a2a.updates import (
    COMPLETED_MISSION,
    TERMINAL,
    USER_STOP_REASON,
    Update,
    translate,
)
from engine.store import Store

# The request and update names live in requests.py and updates.py; they are re-exported
# here, where other modules and tests import them.
__all__ = [
    "COMPLETED_MISSION", "MISSION_STATUS", "RUN_MISSION", "TERMINAL", "USER_STOP_REASON",
    "MissionExecutor", "RequestError", "SkillRequest", "Update", "parse_decision",
    "parse_request", "translate",
]


class MissionExecutor(AgentExecutor):
    """Runs the two skills against :class:`Projects`; task links live in a :class:`TaskMap`."""

    def __init__(self, projects: Projects, tasks: TaskMap, *, drop_env: tuple[str, ...] = (),
                 poll_interval: float = 0.2, start_timeout: float = START_TIMEOUT_S,
                 stop_timeout: float = 900.0) -> None:
        self.projects = projects
        self.tasks = tasks
        self.drop_env = drop_env
        self.poll_interval = poll_interval
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._processes: dict[tuple[str, int], subprocess.Popen[bytes]] = {}
        self._launching: dict[str, LaunchedMission] = {}
        self._cancelling: set[str] = set()

    # ------------------------------------------------------------------ execute
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = str(context.task_id), str(context.context_id)
        link = self.tasks.get(task_id) if context.current_task is not None else None
        if link is not None:
            await self._reply_to_input(link, context, TaskUpdater(event_queue, task_id, context_id))
            return
        try:
            request = parse_request(context.message)
            project = self.projects.get(request.project)
            if request.skill == MISSION_STATUS:
                await self._answer_status(project, request, context, event_queue)
                return
        except (RequestError, ProjectError) as exc:
            await event_queue.enqueue_event(self._message(context, str(exc), {"error": str(exc)}))
            return
        await self._run_mission(project, request.objective, context, event_queue)

    @staticmethod
    def _message(context: RequestContext, text: str, data: dict[str, Any]) -> Message:
        return Message(
            role=Role.ROLE_AGENT, message_id=os.urandom(16).hex(),
            context_id=str(context.context_id),
            parts=[new_text_part(text), new_data_part(data)],
        )

    async def _answer_status(self, project: Project, request: SkillRequest,
                             context: RequestContext, event_queue: EventQueue) -> None:
        store = project.store()
        if store is None:
            raise ProjectError(f"project {project.name!r} has no missions yet")
        with store:
            try:
                status = mission_status(store, request.mission_id)
            except KeyError as exc:
                raise ProjectError(f"project {project.name!r}: {exc.args[0]}") from None
        status["project"] = project.name
        await event_queue.enqueue_event(self._message(
            context, f"project {project.name}\n{describe_status(status)}", status))

    async def _run_mission(self, project: Project, objective: str, context: RequestContext,
                           event_queue: EventQueue) -> None:
        task_id, context_id = str(context.task_id), str(context.context_id)
        history = [context.message] if context.message is not None else []
        await event_queue.enqueue_event(
            new_task(task_id, context_id, TaskState.TASK_STATE_SUBMITTED, history=history))
        updater = TaskUpdater(event_queue, task_id, context_id)

        def say(text: str) -> Message:
            return updater.new_agent_message([new_text_part(text)])

        try:
            store = await asyncio.to_thread(self._open_store_for_launch, project)
            cursor = store.last_event_id() if store else 0
            if store:
                store.close()
            launched = await asyncio.to_thread(
                launch_mission, project, objective, drop_env=self.drop_env)
        except (ProjectError, OSError) as exc:
            await updater.failed(say(f"could not start the mission: {exc}"))
            return
        self._launching[task_id] = launched
        try:
            store, mission_id = await self._wait_for_mission(project, launched)
        except MissionStartError as exc:
            await updater.failed(say(str(exc)))
            return
        finally:
            self._launching.pop(task_id, None)
        self._processes[(project.name, mission_id)] = launched.process
        self.tasks.link(task_id, context_id, project.name, mission_id, cursor)
        await updater.start_work(say(
            f"mission #{mission_id} started on project {project.name}: {objective} "
            f"(log: {launched.log_path})"))
        with store:
            await self._follow(store, project, self.tasks.get(task_id), updater)  # type: ignore[arg-type]

    @staticmethod
    def _open_store_for_launch(project: Project) -> Store | None:
        return project.store()

    async def _wait_for_mission(self, project: Project,
                                launched: LaunchedMission) -> tuple[Store, int]:
        """The store and the id of the mission the launched process made (or adopted)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout
        store: Store | None = None
        pid = launched.process.pid
        while True:
            if store is None:
                store = await asyncio.to_thread(project.store)
            if store is not None:
                mission_id = mission_of_process(store, pid, launched.started_at - 1.0)
                if mission_id is not None:
                    return store, mission_id
            code = launched.process.poll()
            if code is not None or loop.time() > deadline:
                if store is not None:
                    store.close()
                if code is None:
                    _interrupt(launched.process)
                    why = f"no mission after {self.start_timeout:.0f}s"
                else:
                    why = f"`mc mission` exited with code {code} before its mission began"
                tail = launched.log_tail()
                raise MissionStartError(f"{why}" + (f":\n{tail}" if tail else ""))
            await asyncio.sleep(self.poll_interval / 2)

    # ------------------------------------------------------------------ following a mission
    async def _follow(self, store: Store, project: Project, link: TaskLink,
                      updater: TaskUpdater) -> None:
        """Report the mission's events from the link's cursor until it ends or asks for input."""
        cursor, mission_id = link.cursor, link.mission_id
        process = self._processes.get((project.name, mission_id))
        while True:
            events = store.events_after(cursor, mission_id)
            for event in events:
                cursor = event.id
                update = translate(event, store)
                if update is None:
                    continue
                if update.state in TERMINAL:
                    self.tasks.advance(link.task_id, cursor)
                    await self._finish(store, project, link, updater, update)
                    return
                message = updater.new_agent_message([new_text_part(update.text)])
                if update.state == TaskState.TASK_STATE_INPUT_REQUIRED:
                    if not self._still_pending(store, event):
                        continue  # decided already (by `mc approve`, the dashboard...)
                    self.tasks.advance(link.task_id, cursor)
                    await updater.requires_input(message)
                    return
                await updater.update_status(update.state, message)
            if events:
                self.tasks.advance(link.task_id, cursor)
                continue
            if process is not None and process.poll() is not None:
                if store.events_after(cursor, mission_id):
                    continue  # its last events landed after the read above
                await self._process_died(store, project, link, updater, process)
                return
            await asyncio.sleep(self.poll_interval)

    @staticmethod
    def _still_pending(store: Store, event: Event) -> bool:
        row = store.get("approvals", event.payload.get("id"))
        return row is not None and row["status"] == "pending"

    async def _process_died(self, store: Store, project: Project, link: TaskLink,
                            updater: TaskUpdater, process: subprocess.Popen[bytes]) -> None:
        self._processes.pop((project.name, link.mission_id), None)
        row = store.get("missions", link.mission_id) or {}
        if link.task_id in self._cancelling:
            await asyncio.Event().wait()  # cancel() ends the task
        await updater.failed(updater.new_agent_message([new_text_part(
            f"`mc mission` (pid {process.pid}) exited with code {process.returncode}; "
            f"mission #{link.mission_id} is {row.get('status', 'unknown')}"
            + (f": {row['outcome']}" if row.get("outcome") else "")
            + (f"; resume it with `mc mission --resume --config {project.config_path}`"
               if row.get("status") in ACTIVE_MISSION | {MissionStatus.INTERRUPTED} else ""))]))

    async def _finish(self, store: Store, project: Project, link: TaskLink,
                      updater: TaskUpdater, update: Update) -> None:
        """Artifacts (summary text, JSON report), then the terminal state."""
        if link.task_id in self._cancelling:
            await asyncio.Event().wait()  # cancel() ends the task once the mission stopped
        status = mission_status(store, link.mission_id)
        status["project"] = project.name
        summary = describe_status(status)
        await updater.add_artifact(
            new_text_artifact("mission-summary", summary).parts, name="mission-summary")
        await updater.add_artifact(
            new_data_artifact("mission-report", build_report(store, link.mission_id)).parts,
            name="mission-report")
        await self._reap(project, link.mission_id)
        await updater.update_status(
            update.state, updater.new_agent_message([new_text_part(update.text)]))

    async def _reap(self, project: Project, mission_id: int) -> None:
        process = self._processes.pop((project.name, mission_id), None)
        if process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(process.wait, 30)

    async def _reply_to_input(self, link: TaskLink, context: RequestContext,
                              updater: TaskUpdater) -> None:
        """A reply on a task parked in ``input-required``: decide, then follow again."""
        project = self.projects.get(link.project)
        store = project.store()
        assert store is not None  # the task's mission lives there
        with store:
            decision = parse_decision(context.message)
            if decision is not None:
                decided = decide_pending(store, link.mission_id, decision, by="a2a")
                note = (f"approval {', '.join(f'#{i}' for i in decided)} "
                        f"{'approved' if decision else 'denied'}" if decided
                        else "nothing was pending any more")
                await updater.start_work(updater.new_agent_message([new_text_part(note)]))
            elif store.rows("approvals", "mission_id = ? AND status = 'pending'",
                            (link.mission_id,)):
                await updater.requires_input(updater.new_agent_message([new_text_part(
                    "an approval is pending: reply \"approve\" or \"deny\"")]))
                return
            await self._follow(store, project, link, updater)

    # ------------------------------------------------------------------ cancel
    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Stop the task's mission gracefully (the commands table) and end the task
        ``canceled`` once the mission has stopped (or after ``stop_timeout`` seconds, saying
        the mission is still stopping)."""
        task_id, context_id = str(context.task_id), str(context.context_id)
        updater = TaskUpdater(event_queue, task_id, context_id)
        self._cancelling.add(task_id)
        try:
            launching = self._launching.get(task_id)
            if launching is not None:
                _interrupt(launching.process)
            link = self.tasks.get(task_id)
            if link is None:
                await updater.cancel(updater.new_agent_message([new_text_part(
                    "canceled before its mission started")]))
                return
            project = self.projects.get(link.project)
            store = project.store()
            assert store is not None
            with store:
                note = await self._stop_mission(store, project, link)
            await self._reap(project, link.mission_id)
            await updater.cancel(updater.new_agent_message([new_text_part(note)]))
        finally:
            self._cancelling.discard(task_id)

    async def stop_linked_mission(self, task_id: str) -> str | None:
        """Stop the mission linked to ``task_id`` and wait until it stopped (None: no link,
        or its mission already ended)."""
        link = self.tasks.get(task_id)
        if link is None:
            return None
        project = self.projects.get(link.project)
        store = project.store()
        if store is None:
            return None
        with store:
            return await self._stop_mission(store, project, link)

    async def _stop_mission(self, store: Store, project: Project, link: TaskLink) -> str:
        row = store.get("missions", link.mission_id) or {}
        if row.get("status") in ACTIVE_MISSION:
            request_stop(store, link.mission_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stop_timeout
        process = self._processes.get((project.name, link.mission_id))
        while loop.time() < deadline:
            row = store.get("missions", link.mission_id) or {}
            if row.get("status") not in ACTIVE_MISSION:
                return f"mission #{link.mission_id} {row.get('status')}: {row.get('outcome') or ''}"
            if process is not None and process.poll() is not None:
                return f"mission #{link.mission_id}: its process exited ({process.returncode})"
            await asyncio.sleep(self.poll_interval)
        return (f"mission #{link.mission_id} was asked to stop and is still stopping "
                f"after {self.stop_timeout:.0f}s")


def _interrupt(process: subprocess.Popen[bytes]) -> None:
    """Ctrl-C to a launched ``mc mission`` (its own process group): it ends resumable."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGINT)
