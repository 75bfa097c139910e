"""The worker result marker."""

from __future__ import annotations

from engine.agents.marker import WorkerMarker, format_marker, parse_marker


def test_round_trip_and_last_marker_wins() -> None:
    first = WorkerMarker("failed", "first try", [], [], [])
    second = WorkerMarker("completed", "added subtract", ["calc.py"], ["uses floats"], ["no docs"])
    text = f"work...\n{format_marker(first)}\nmore work\n{format_marker(second)}\nbye"
    assert parse_marker(text) == second


def test_fenced_and_unclosed_markers() -> None:
    fenced = ('Done.\n<mc-result>\n```json\n{"status": "blocked", "summary": "needs unit 2"}\n```\n'
              "</mc-result>")
    marker = parse_marker(fenced)
    assert marker is not None and marker.status == "blocked" and marker.files_changed == []
    unclosed = 'Done <mc-result>{"status": "completed", "summary": "ok"} trailing words'
    assert parse_marker(unclosed) == WorkerMarker("completed", "ok", [], [], [])


def test_malformed_markers_give_none() -> None:
    assert parse_marker("") is None
    assert parse_marker("no marker here") is None
    assert parse_marker('<mc-result>{"status": "completed", "summary": </mc-result>') is None
    assert parse_marker('<mc-result>{"status": "great", "summary": "x"}</mc-result>') is None
    assert parse_marker('<mc-result>["completed"]</mc-result>') is None
    assert parse_marker('<mc-result>{"status": "completed", "summary": 3}</mc-result>') is None
    bad_list = '<mc-result>{"status": "completed", "summary": "x", "concerns": 5}</mc-result>'
    assert parse_marker(bad_list) is None


def test_a_bad_last_marker_falls_back_to_an_earlier_good_one() -> None:
    text = ('<mc-result>{"status": "completed", "summary": "real"}</mc-result>\n'
            "<mc-result>{oops</mc-result>")
    marker = parse_marker(text)
    assert marker is not None and marker.summary == "real"


def test_lenient_fields() -> None:
    marker = parse_marker('<mc-result>{"status": "COMPLETED", "summary": " s ", '
                          '"files_changed": "a.py", "discoveries": [1, {"k": 2}]}</mc-result>')
    assert marker == WorkerMarker("completed", "s", ["a.py"], ["1", '{"k": 2}'], [])
