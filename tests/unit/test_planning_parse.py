"""extract_json: fenced blocks, bare objects, helpful errors."""

from __future__ import annotations

import pytest

from engine.planning.parse import PlanParseError, as_number, balanced_objects, extract_json


def test_json_fence_wins_over_other_objects() -> None:
    text = 'Thinking {"not": "this"}\n```json\n{"units": [1, 2]}\n```\nbye {"nor": "this"}'
    assert extract_json(text) == {"units": [1, 2]}


def test_last_json_fence_is_the_answer() -> None:
    text = '```json\n{"draft": 1}\n```\nrevised:\n```json\n{"final": 2}\n```'
    assert extract_json(text) == {"final": 2}


def test_unlabelled_fence_that_parses() -> None:
    text = 'Here:\n```\n{"a": 1}\n```\n```python\nprint("x")\n```'
    assert extract_json(text) == {"a": 1}


def test_last_balanced_object_without_fences() -> None:
    text = 'I considered {"a": 1} but the answer is {"b": {"c": [1, {"d": 2}]}} done.'
    assert extract_json(text) == {"b": {"c": [1, {"d": 2}]}}


def test_braces_inside_strings_do_not_confuse_the_scanner() -> None:
    text = 'answer: {"title": "use {curly} braces }", "esc": "quote \\" and }"} trailing }'
    assert extract_json(text) == {"title": "use {curly} braces }", "esc": 'quote " and }'}


def test_prose_braces_after_the_object_are_skipped() -> None:
    text = '{"score": 7} -- note: see {this} in the docs'
    assert extract_json(text) == {"score": 7}


def test_fence_broken_by_backticks_in_a_string_falls_back_to_the_object() -> None:
    text = '```json\n{"description": "run ```pytest``` first", "n": 1}\n```'
    assert extract_json(text) == {"description": "run ```pytest``` first", "n": 1}


def test_invalid_json_fence_reports_position() -> None:
    with pytest.raises(
        PlanParseError, match=r"the ```json block is not valid JSON: .* line 1 column 9"
    ):
        extract_json('```json\n{"a": 1,}\n```')


def test_invalid_bare_object_is_reported() -> None:
    with pytest.raises(PlanParseError, match="not valid JSON"):
        extract_json("the plan is {units: [1]}")


def test_no_json_at_all_quotes_the_answer() -> None:
    with pytest.raises(PlanParseError, match="no JSON object found.*I cannot help"):
        extract_json("I cannot help with that.")


def test_empty_answer() -> None:
    with pytest.raises(PlanParseError, match="empty"):
        extract_json("   \n")


def test_balanced_objects_ignores_unbalanced_tail() -> None:
    assert balanced_objects('{"a": 1} {"b": ') == ['{"a": 1}']
    assert balanced_objects("} {} {{}}") == ["{}", "{{}}"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (7, 7.0),
        (7.5, 7.5),
        ("8", 8.0),
        (" 6/10 ", 6.0),
        ("-1", -1.0),
        (True, None),
        ("seven", None),
        (None, None),
        ([1], None),
        (float("nan"), None),
    ],
)
def test_as_number(value: object, expected: float | None) -> None:
    assert as_number(value) == expected
