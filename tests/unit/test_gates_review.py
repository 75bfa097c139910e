"""Review gate: prompt, parsing, one retry, failing verdict."""

from __future__ import annotations

import anyio
import pytest

from engine.gates.review import (
    MAX_DIFF_CHARS,
    ReviewParseError,
    ReviewVerdict,
    parse_review,
    review_prompt,
    review_unit,
)

UNIT = {
    "id": "u-1",
    "title": "Add token bucket limiter",
    "description": "Limit the client to 5 requests per second.",
    "acceptance_criteria": ["burst of 10 allowed", "refill at 5/s"],
    "files_hint": ["src/limit.py"],
    "specialist": "general",
}


class Scripted:
    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.prompts: list[str] = []

    async def __call__(self, role: str, prompt: str) -> str:
        assert role == "reviewer"
        self.prompts.append(prompt)
        return self.answers.pop(0)


def run_review(ask: Scripted, min_score: float = 6.0) -> ReviewVerdict:
    return anyio.run(
        lambda: review_unit(
            ask,
            objective="Rate limit the client",
            unit=UNIT,
            diff="+bucket = Bucket(10)\n",
            diffstat="src/limit.py | 1 +",
            min_score=min_score,
        )
    )


def test_mean_score_and_pass() -> None:
    v = parse_review(
        '```json\n{"alignment": 8, "approach": 7, "tests": 6, "feedback": " ok "}\n```', min_score=7
    )
    assert (v.alignment, v.approach, v.tests) == (8, 7, 6)
    assert v.score == 7.0 and v.passed and v.feedback == "ok"


def test_below_threshold_fails() -> None:
    v = parse_review(
        '{"alignment": 6, "approach": 6, "tests": 5, "feedback": "needs tests"}', min_score=6
    )
    assert v.score == pytest.approx(5.67) and not v.passed


def test_given_score_overrides_mean() -> None:
    v = parse_review(
        '{"alignment": 9, "approach": 9, "tests": 9, "score": 4, "feedback": "security bug"}',
        min_score=6,
    )
    assert v.score == 4 and not v.passed


def test_numeric_strings_accepted() -> None:
    v = parse_review('{"alignment": "8/10", "approach": "7", "tests": 9}', min_score=6)
    assert v.score == 8.0 and v.feedback == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("LGTM!", "no JSON object"),
        ('{"alignment": 8, "approach": 7}', 'missing "tests"'),
        ('{"alignment": 11, "approach": 7, "tests": 7}', '"alignment" must be a number'),
        ('{"alignment": "great", "approach": 7, "tests": 7}', '"alignment" must be a number'),
        ('{"alignment": 8, "approach": 7, "tests": 7, "score": "high"}', '"score" must be'),
        ("```json\n[8, 7, 6]\n```", "expected a JSON object"),
    ],
)
def test_unparsable(text: str, message: str) -> None:
    with pytest.raises(ReviewParseError, match=message):
        parse_review(text, min_score=6)


def test_event_payload() -> None:
    v = parse_review('{"alignment": 8, "approach": 8, "tests": 8, "feedback": "f"}', min_score=6)
    assert v.event_payload() == {
        "score": 8.0,
        "alignment": 8.0,
        "approach": 8.0,
        "tests": 8.0,
        "passed": True,
        "feedback": "f",
    }


def test_prompt_contains_unit_and_change() -> None:
    prompt = review_prompt(
        objective="Rate limit the client", unit=UNIT, diff="+x = 1\n", diffstat="src/limit.py | 1 +"
    )
    for text in [
        "Rate limit the client",
        "Add token bucket limiter",
        "5 requests per second",
        "- burst of 10 allowed",
        "src/limit.py | 1 +",
        "+x = 1",
        "expected files: src/limit.py",
    ]:
        assert text in prompt


def test_prompt_clips_huge_diffs_and_handles_sparse_rows() -> None:
    row = {
        "title": "t",
        "description": None,
        "acceptance_criteria": '["raw json"]',
        "files_hint": None,
    }
    prompt = review_prompt(objective="o", unit=row, diff="+a\n" * MAX_DIFF_CHARS, diffstat="")
    assert "diff truncated" in prompt
    assert len(prompt) < MAX_DIFF_CHARS + 5000
    assert "(empty)" in prompt  # diffstat
    assert "- raw json" in prompt and '["raw json"]' not in prompt
    empty = review_prompt(objective="o", unit=row, diff="  ", diffstat="")
    assert "(empty diff)" in empty


def test_review_unit_first_answer() -> None:
    ask = Scripted('{"alignment": 9, "approach": 8, "tests": 7, "feedback": "good"}')
    verdict = run_review(ask)
    assert verdict.passed and verdict.score == 8.0 and len(ask.prompts) == 1


def test_review_unit_retries_once_with_the_problem() -> None:
    ask = Scripted(
        "Looks fine to me.", '{"alignment": 5, "approach": 5, "tests": 5, "feedback": "meh"}'
    )
    verdict = run_review(ask)
    assert not verdict.passed and verdict.feedback == "meh"
    assert "could not be used" in ask.prompts[1] and "no JSON object" in ask.prompts[1]


def test_review_unit_gives_up_with_failing_verdict() -> None:
    ask = Scripted("nope", '{"alignment": 8}')
    verdict = run_review(ask, min_score=0.0)
    assert not verdict.passed and verdict.score == 0.0
    assert "unusable twice" in verdict.feedback and 'missing "approach"' in verdict.feedback
