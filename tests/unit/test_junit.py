"""JUnit XML reading and unittest output parsing (engine/gitops/junit.py, testresults.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.gitops.junit import JUnitError, parse_junit, read_junit
from engine.gitops.testresults import (
    PYTEST_FILE,
    explains,
    parse_unittest_output,
    read_results,
    results_env,
)

PYTEST_XML = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="5">
<testcase classname="tests.test_a" name="test_ok" time="0.001"/>
<testcase classname="tests.test_a" name="test_bad" time="0.001"><failure message="assert 1 == 2">x</failure></testcase>
<testcase classname="tests.test_a.TestK" name="test_err[1-2]"><error message="boom"/></testcase>
<testcase classname="tests.test_a" name="test_skip"><skipped message="later"/></testcase>
<testcase classname="" name="tests.test_broken"><error message="collection failure"/></testcase>
</testsuite></testsuites>"""

UNITTEST_OUT = """..EF
======================================================================
ERROR: test_err (tests.test_a.A.test_err)
----------------------------------------------------------------------
RuntimeError: x
======================================================================
ERROR: tests.test_imp (unittest.loader._FailedTest.tests.test_imp)
----------------------------------------------------------------------
ImportError: Failed to import test module: test_imp
======================================================================
FAIL: test_fail (tests.test_a.A.test_fail)
----------------------------------------------------------------------
AssertionError: 1 != 2
----------------------------------------------------------------------
Ran 5 tests in 0.006s

FAILED (failures=1, errors=2)
"""


def test_pytest_junit_failures_and_errors_count_skips_do_not() -> None:
    report = parse_junit(PYTEST_XML)
    assert report.tests == 5
    assert report.failing == {"tests.test_a.test_bad", "tests.test_a.TestK.test_err[1-2]",
                              "tests.test_broken"}


def test_a_bare_testsuite_root_is_read_too() -> None:
    report = parse_junit('<testsuite><testcase name="t1"><failure/></testcase></testsuite>')
    assert report.failing == {"t1"} and report.tests == 1


@pytest.mark.parametrize("text", ["not xml at all", "<html><body/></html>", ""])
def test_not_junit_is_an_error(text: str) -> None:
    with pytest.raises(JUnitError):
        parse_junit(text)


def test_read_junit_combines_files_and_skips_missing_or_broken(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_text('<testsuite><testcase name="a"><failure/></testcase></testsuite>')
    (tmp_path / "b.xml").write_text("<broken")
    assert read_junit([tmp_path / "missing.xml"]) is None
    report = read_junit([tmp_path / "a.xml", tmp_path / "b.xml", tmp_path / "missing.xml"])
    assert report is not None and report.failing == {"a"}


def test_unittest_output_names_the_failing_tests() -> None:
    results = parse_unittest_output(UNITTEST_OUT)
    assert results.source == "unittest" and results.tests == 5
    assert results.failing == {"tests.test_a.A.test_err", "tests.test_a.A.test_fail",
                               "unittest.loader._FailedTest.tests.test_imp"}


def test_unittest_output_of_older_pythons_gets_the_full_id() -> None:
    out = ("FAIL: test_fail (tests.test_a.A)\n" + "-" * 70
           + "\nRan 1 test in 0.001s\n\nFAILED (failures=1)\n")
    assert parse_unittest_output(out).failing == {"tests.test_a.A.test_fail"}


def test_a_unittest_listing_cut_short_is_not_trusted() -> None:
    cut = UNITTEST_OUT.replace("FAIL: test_fail (tests.test_a.A.test_fail)\n", "")
    assert parse_unittest_output(cut).failing is None
    assert parse_unittest_output("no tests here\n").failing is None
    ok = parse_unittest_output("....\n" + "-" * 70 + "\nRan 4 tests in 0.01s\n\nOK\n")
    assert ok.failing == frozenset() and ok.tests == 4


def test_results_env_appends_to_the_users_pytest_addopts(tmp_path: Path) -> None:
    env = results_env({"PYTEST_ADDOPTS": "-x -q", "HOME": "/h"}, tmp_path / "dir with space")
    assert env["PYTEST_ADDOPTS"].startswith("-x -q --junitxml=")
    assert "'" in env["PYTEST_ADDOPTS"]  # quoted: pytest splits it like a shell
    assert env["MC_JUNIT_XML"].endswith("junit.xml") and env["HOME"] == "/h"
    assert results_env({}, tmp_path)["PYTEST_ADDOPTS"].startswith("--junitxml=")


def test_read_results_prefers_junit_and_drops_a_killed_run(tmp_path: Path) -> None:
    (tmp_path / PYTEST_FILE).write_text(PYTEST_XML)
    assert read_results(tmp_path, UNITTEST_OUT, 1).source == "junit"
    assert read_results(tmp_path, UNITTEST_OUT, None).failing is None
    (tmp_path / PYTEST_FILE).unlink()
    assert read_results(tmp_path, UNITTEST_OUT, 1).source == "unittest"


def test_explains_matches_the_exit_status() -> None:
    assert explains(frozenset({"t"}), 1) and explains(frozenset(), 0)
    assert not explains(frozenset(), 1)  # e.g. the tests passed, then lint failed
    assert not explains(frozenset({"t"}), 0) and not explains(None, 1)
