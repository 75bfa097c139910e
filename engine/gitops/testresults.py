"""Which tests a verification run failed, where the runner's output can be read.

Nothing in the user's command is rewritten. Two environment variables are added:

* ``PYTEST_ADDOPTS`` gets ``--junitxml=<tmp>/pytest.xml`` appended (any pytest the
  command starts writes its JUnit XML there; a ``--junitxml`` of the user's own on the
  command line wins, then we simply find no file);
* ``MC_JUNIT_XML=<tmp>/junit.xml``: a runner that can write JUnit XML to a path given
  in the environment (jest-junit, go-junit-report, a wrapper script) can be pointed there.

Without JUnit XML, the text ``python -m unittest`` prints is read (``FAIL: name (id)``
blocks, cross-checked against its ``FAILED (failures=N, errors=M)`` summary). Results
*explain* the exit status when exit 0 comes with no failing test and a non-zero exit with
some (:func:`explains`): a command like ``pytest && ruff check .`` whose tests pass but
whose lint fails has test results that do not explain its failure.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from engine.gitops.junit import read_junit

PYTEST_FILE = "pytest.xml"
JUNIT_FILE = "junit.xml"

_UNITTEST_CASE = re.compile(r"^(FAIL|ERROR|UNEXPECTED SUCCESS): (\S+) \(([^)]*)\)", re.M)
_UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in ", re.M)
_UNITTEST_FAILED = re.compile(r"^FAILED \(([^)]*)\)\s*$", re.M)


@dataclass(frozen=True)
class TestResults:
    """What a run says about single tests. ``failing`` is None when nothing could be read."""

    __test__ = False  # not a pytest test class

    failing: frozenset[str] | None
    tests: int | None = None
    source: str = ""  # "junit" | "unittest" | ""

    @property
    def readable(self) -> bool:
        return self.failing is not None


NO_RESULTS = TestResults(None)


def results_env(base: dict[str, str], results_dir: Path) -> dict[str, str]:
    """``base`` plus the variables that make runners leave JUnit XML in ``results_dir``."""
    env = dict(base)
    option = f"--junitxml={shlex.quote(str(results_dir / PYTEST_FILE))}"
    env["PYTEST_ADDOPTS"] = f"{env['PYTEST_ADDOPTS']} {option}" if env.get("PYTEST_ADDOPTS") else option
    env["MC_JUNIT_XML"] = str(results_dir / JUNIT_FILE)
    return env


def parse_unittest_output(output: str) -> TestResults:
    """Failing test ids from ``python -m unittest`` text output (every run in it), or
    :data:`NO_RESULTS` when there is no unittest summary or the listing is incomplete."""
    ran = [int(n) for n in _UNITTEST_RAN.findall(output)]
    if not ran:
        return NO_RESULTS
    expected = 0
    for summary in _UNITTEST_FAILED.findall(output):
        for part in summary.split(","):
            key, _, value = part.strip().partition("=")
            if key in ("failures", "errors", "unexpected successes") and value.isdigit():
                expected += int(value)
    cases = _UNITTEST_CASE.findall(output)
    if len(cases) != expected:  # a listing cut by the output bound, or not unittest after all
        return NO_RESULTS
    failing = set()
    for _kind, name, where in cases:
        # Python >= 3.11 prints the full id in the parentheses; older ones the class only.
        failing.add(where if where == name or where.endswith("." + name) else f"{where}.{name}")
    return TestResults(frozenset(failing), sum(ran), "unittest")


def read_results(results_dir: Path, output: str, exit_code: int | None) -> TestResults:
    """The failing tests of one finished run, or :data:`NO_RESULTS` (also when it was killed:
    ``exit_code`` None)."""
    if exit_code is None:
        return NO_RESULTS
    report = read_junit([results_dir / PYTEST_FILE, results_dir / JUNIT_FILE])
    if report is not None:
        return TestResults(report.failing, report.tests, "junit")
    return parse_unittest_output(output)


def explains(failing: frozenset[str] | None, exit_code: int | None) -> bool:
    """Whether a failing set accounts for an exit status (see :func:`read_results`)."""
    return failing is not None and exit_code is not None and (exit_code == 0) == (not failing)
