"""Cassette parsing, validation and matching."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from engine.agents.cassette import CassetteError, load_cassette, parse_cassette, substitute
from engine.agents.types import AgentRequest, AgentRole

CASSETTE = '''
[[interaction]]
role = "planner"
match = "subtract"
times = 1
cost_usd = 0.5
  [[interaction.actions]]
  type = "text"
  text = '{"units": []}'

[[interaction]]
role = "worker"
when = { unit_title = "Add *", attempt = "2" }
  [[interaction.actions]]
  type = "write"
  path = "a.txt"
  content = "{{unit_id}}"

[[interaction]]
role = "worker"
times = 2
'''


def req(role: AgentRole, prompt: str = "", **meta: str) -> AgentRequest:
    return AgentRequest(role=role, prompt=prompt, workdir=Path("."), metadata=meta)


def test_matching_order_times_and_filters(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(CASSETTE)
    cassette = load_cassette(path)
    assert cassette.take(req(AgentRole.PLANNER, "please ADD A SUBTRACT")).index == 0
    assert cassette.take(req(AgentRole.PLANNER, "add a subtract")) is None  # times = 1 used up
    worker = req(AgentRole.WORKER, unit_title="Add subtract", attempt="2")
    assert cassette.take(worker).index == 1
    assert cassette.take(worker).index == 1  # unlimited
    other = req(AgentRole.WORKER, unit_title="Fix docs", attempt="2")
    assert cassette.take(other).index == 2
    assert cassette.take(req(AgentRole.WORKER)).index == 2  # missing metadata: entry 1 skipped
    assert cassette.take(req(AgentRole.WORKER)) is None


def test_take_is_thread_safe() -> None:
    cassette = parse_cassette({"interaction": [{"times": 50}]})
    got: list[object] = []

    def grab() -> None:
        for _ in range(20):
            got.append(cassette.take(req(AgentRole.WORKER)))

    threads = [threading.Thread(target=grab) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(1 for g in got if g is not None) == 50


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"interaction": [{"actions": [{"type": "explode"}]}]}, "unknown type 'explode'"),
        ({"interaction": [{"actions": [{"type": "write", "path": "x"}]}]}, "missing content"),
        ({"interaction": [{"actions": [{"type": "text", "txt": "x", "text": "y"}]}]},
         "unknown key(s) ['txt']"),
        ({"interaction": [{"rol": "worker"}]}, "unknown key(s) ['rol']"),
        ({"interaction": [{"match": "("}]}, "bad 'match' regex"),
        ({"interaction": [{"times": 0}]}, "'times' must be a positive integer"),
        ({"interaction": [{"status": "great"}]}, "status must be one of"),
        ({"interaction": [{"actions": [{"type": "fail", "reason": "nope"}]}]}, "reason must be"),
        ({"interactions": []}, "unknown top-level key"),
        ({"interaction": [{"actions": [{"type": "patch", "path": "a", "find": "(", "replace": "",
                                        "regex": True}]}]}, "not a valid regex"),
    ],
)
def test_validation_errors(data: dict, message: str) -> None:
    with pytest.raises(CassetteError) as err:
        parse_cassette(data, source="c.toml")
    assert message in str(err.value) and "c.toml" in str(err.value)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(CassetteError, match="not found"):
        load_cassette(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[interaction]\n")
    with pytest.raises(CassetteError, match="invalid TOML"):
        load_cassette(bad)


def test_substitution_leaves_json_and_unknown_names_alone() -> None:
    text = '{"id": "{{unit_id}}", "x": {"y": 1}} {{ attempt }} {{nope}}'
    assert substitute(text, {"unit_id": "u1", "attempt": "2"}) == (
        '{"id": "u1", "x": {"y": 1}} 2 {{nope}}')
