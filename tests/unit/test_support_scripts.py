"""The ready-made mission script answers each engine prompt with what its parser accepts."""

from __future__ import annotations

from engine.agents.marker import parse_marker
from engine.gates.objective import parse_objective
from engine.gates.review import parse_review
from engine.planning.ambition import parse_ambition
from engine.planning.parse import extract_json
from engine.planning.schema import PlannerAnswer
from engine.prompts import PROMPTS_DIR
from engine.strategy.strategist import parse_strategy
from tests.support.script import ModelRequest, Reply
from tests.support.scripts import MissionUnit, small_mission_rules

UNITS = [MissionUnit("Add greet", {"greet.py": "x = 1\n"}),
         MissionUnit("Add farewell", {"bye.py": "y = 2\n"}, dependencies=["Add greet"])]


def view(prompt: str, tool_turns: int = 0) -> ModelRequest:
    system = "Env\n - Primary working directory: /tmp/wt/slot-1\n"
    return ModelRequest(dialect="anthropic", path="/v1/messages", model="claude-sonnet-5-5",
                        stream=True, system=system, prompt_text=f"{system}\n{prompt}",
                        last_text=prompt, tool_turns=tool_turns, last_is_tool_result=False,
                        tools=[], tool_results=[], body={})


def answer(prompt: str, tool_turns: int = 0) -> tuple[str, Reply]:
    rules = small_mission_rules(UNITS)
    request = view(prompt, tool_turns)
    for rule in rules:
        if rule.matches(request):
            reply = rule.resolve(request)
            assert reply is not None
            return rule.name, reply
    raise AssertionError("no rule matched")


def role_prompt(name: str, extra: str = "") -> str:
    return (PROMPTS_DIR / f"{name}.md").read_text() + extra


def test_each_role_prompt_gets_an_answer_its_parser_accepts() -> None:
    name, plan = answer(role_prompt("planner"))
    assert name == "planner"
    parsed = PlannerAnswer.model_validate(extract_json(plan.text()))
    assert [u.title for u in parsed.units] == ["Add greet", "Add farewell"]
    assert parsed.units[1].dependencies == ["Add greet"]
    assert answer(role_prompt("reviewer"))[0] == "reviewer"
    assert parse_review(answer(role_prompt("reviewer"))[1].text(), min_score=6).passed
    assert parse_objective(answer(role_prompt("objective_check"))[1].text()).met
    assert parse_ambition(answer(role_prompt("ambition"))[1].text())[0] == 8
    assert parse_strategy(answer(role_prompt("strategist"))[1].text()).next_objective
    assert answer(role_prompt("architect"))[0] == "architect"
    assert answer(role_prompt("fixup"))[0] == "fixup"


def test_a_worker_writes_its_own_units_files_then_tests_then_marks() -> None:
    prompt = role_prompt("worker").replace("$unit_title", "Add farewell").replace(
        "$unit_id", "u-2")
    steps = [answer(prompt, i)[1] for i in range(4)]
    write = steps[0].blocks[0]
    assert write.name == "Write"
    assert write.input == {"file_path": "/tmp/wt/slot-1/bye.py", "content": "y = 2\n"}
    assert steps[1].blocks[0].input["command"] == "python -m unittest -q"
    final = parse_marker(steps[2].text())
    assert final is not None and final.status == "completed" and final.files_changed == ["bye.py"]
    assert steps[3].text() == steps[2].text()  # the last step repeats
    editor = role_prompt("editor").replace("$unit_title", "Add greet")
    name, first = answer(editor)
    assert name == "worker" and first.blocks[0].input["file_path"].endswith("/greet.py")
