"""Parsing a reflection answer (engine/learning/reflection.py)."""

from __future__ import annotations

from engine.learning.reflection import MAX_LESSONS, MAX_TEXT, note, parse_reflection


def test_the_json_answer_gives_text_and_lessons() -> None:
    answer = ('Thinking...\n```json\n{"reflection": "Two units broke the  header rule.", '
              '"lessons": ["Add the SPDX header", "", "Keep units small"]}\n```')
    assert parse_reflection(answer) == ("Two units broke the header rule.",
                                        ["Add the SPDX header", "Keep units small"])


def test_a_prose_answer_is_kept_clipped_and_lessons_are_bounded() -> None:
    text, lessons = parse_reflection("The tests   were flaky. " * 100)
    assert text.startswith("The tests were flaky.") and len(text) <= MAX_TEXT and lessons == []
    many = '{"reflection": "x", "lessons": ' + str([f"l{i}" for i in range(9)]).replace("'", '"') + "}"
    assert len(parse_reflection(many)[1]) == MAX_LESSONS


def test_the_note_the_planner_reads() -> None:
    row = {"number": 2, "text": "Verification failed twice.", "lessons": ["Run tests", "Add headers"]}
    assert note(row) == ("reflection after epoch 2: Verification failed twice. "
                         "Lessons: Run tests; Add headers")
