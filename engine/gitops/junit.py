"""Reading JUnit XML test reports (pytest ``--junitxml``, jest-junit, go-junit-report, ...).

Only what the merge queue needs: how many test cases ran and which of them failed. A test
case failed when it has a ``<failure>`` or an ``<error>`` child; ``<skipped>`` is not a
failure. Its id is ``classname.name`` (``name`` alone when there is no class name), the
form pytest writes (``tests.test_x.TestY.test_z``; a collection error becomes a case
named after its module).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path


class JUnitError(ValueError):
    """The file is not readable JUnit XML."""


@dataclass(frozen=True)
class JUnitReport:
    tests: int  # test cases seen
    failing: frozenset[str]  # ids of the cases with a <failure> or an <error>


def case_id(case: ET.Element) -> str:
    classname = (case.get("classname") or "").strip()
    name = (case.get("name") or "").strip()
    return f"{classname}.{name}" if classname and name else classname or name


def parse_junit(text: str | bytes) -> JUnitReport:
    """Parse one JUnit XML document (root ``<testsuites>`` or ``<testsuite>``).

    Raises :class:`JUnitError` when it is not XML or has no test suite at its root.
    """
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise JUnitError(f"not JUnit XML: {exc}") from None
    if root.tag not in ("testsuites", "testsuite"):
        raise JUnitError(f"not JUnit XML: the root element is <{root.tag}>")
    tests = 0
    failing: set[str] = set()
    for case in root.iter("testcase"):
        tests += 1
        if case.find("failure") is not None or case.find("error") is not None:
            failing.add(case_id(case))
    return JUnitReport(tests, frozenset(failing))


def read_junit(paths: list[Path]) -> JUnitReport | None:
    """The combined report of the files among ``paths`` that exist and parse; None if none do."""
    reports = []
    for path in paths:
        try:
            reports.append(parse_junit(path.read_bytes()))
        except (OSError, JUnitError):
            continue
    if not reports:
        return None
    return JUnitReport(sum(r.tests for r in reports),
                       frozenset().union(*(r.failing for r in reports)))
