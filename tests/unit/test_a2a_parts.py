"""The A2A server's small parts: reading requests and replies, bind rules, task links."""

from __future__ import annotations

from pathlib import Path

import pytest
from a2a.helpers import new_data_part
from a2a.types import Message, Part, Role

from engine.services.a2a.executor import (
    MISSION_STATUS,
    RUN_MISSION,
    RequestError,
    parse_decision,
    parse_request,
)
from engine.services.a2a.projects import Project, ProjectError, Projects
from engine.services.a2a.server import BindRefused, check_bind, is_loopback
from engine.services.a2a.tasks import TaskMap


def message(text: str = "", data: dict | None = None) -> Message:
    parts = ([Part(text=text)] if text else []) + ([new_data_part(data)] if data else [])
    return Message(role=Role.ROLE_USER, message_id="m", parts=parts)


def test_requests_from_data_parts_and_from_text() -> None:
    run = parse_request(message("", {"skill": "run-mission", "project": "p", "objective": "do"}))
    assert (run.skill, run.project, run.objective) == (RUN_MISSION, "p", "do")
    plain = parse_request(message("Add tests", {"project": "p"}))
    assert (plain.skill, plain.project, plain.objective) == (RUN_MISSION, "p", "Add tests")
    status = parse_request(message("status calc #3"))
    assert (status.skill, status.project, status.mission_id) == (MISSION_STATUS, "calc", 3)
    data = parse_request(message("", {"skill": "mission-status", "mission_id": 4}))
    assert (data.skill, data.project, data.mission_id) == (MISSION_STATUS, None, 4)
    assert parse_request(message("status")).project is None


@pytest.mark.parametrize(("msg", "error"), [
    (message("", {"skill": "run-mission"}), "needs an objective"),
    (message("", {"skill": "deploy"}), "unknown skill 'deploy'"),
    (message("", {"skill": "mission-status", "mission_id": "x"}), "mission_id must be a number"),
    (None, "empty request"),
])
def test_bad_requests_say_what_is_wrong(msg: Message | None, error: str) -> None:
    with pytest.raises(RequestError, match=error):
        parse_request(msg)


def test_replies_to_an_approval() -> None:
    assert parse_decision(message("approve please")) is True
    assert parse_decision(message("Deny")) is False
    assert parse_decision(message("", {"decision": "approve"})) is True
    assert parse_decision(message("what is pending?")) is None


def test_only_loopback_binds_without_a_token() -> None:
    for host in ("127.0.0.1", "127.3.4.5", "localhost", "::1", "[::1]"):
        assert is_loopback(host)
        check_bind(host, None, "MC_A2A_TOKEN")
    for host in ("0.0.0.0", "192.168.1.4", "::", "example.com"):
        assert not is_loopback(host)
        with pytest.raises(BindRefused, match="MC_A2A_TOKEN"):
            check_bind(host, None, "MC_A2A_TOKEN")
        check_bind(host, "a-token", "MC_A2A_TOKEN")


def test_projects_default_and_unknown(tmp_path: Path) -> None:
    only = Projects([Project("calc", tmp_path / "a.toml")])
    assert only.get(None).name == "calc"
    two = Projects([Project("calc", tmp_path / "a.toml"), Project("web", tmp_path / "b.toml")])
    with pytest.raises(ProjectError, match="say which project: one of calc, web"):
        two.get(None)
    with pytest.raises(ProjectError, match="unknown project 'x': known projects are calc, web"):
        two.get("x")


def test_task_links_survive_a_reopen(tmp_path: Path) -> None:
    tasks = TaskMap(tmp_path / "t.sqlite")
    tasks.link("task-1", "ctx", "calc", 7, 40)
    tasks.advance("task-1", 55)
    tasks.close()
    link = TaskMap(tmp_path / "t.sqlite").get("task-1")
    assert link is not None and (link.project, link.mission_id, link.cursor) == ("calc", 7, 55)
