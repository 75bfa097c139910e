"""Static discovery signals: well-kept tools run read-only on the target's committed tree.

Each collector returns :class:`Finding` objects and appends a note when its tool is missing
or does not apply (a missing tool is said, never silently skipped):

- ``quality``: ``ruff check`` (Python files only), TODO/FIXME/XXX/HACK comments (``git grep``);
- ``tests``: failing tests of the last verification (the store), skipped tests (``git grep``
  for pytest/unittest/jest/mocha skips), files under 50 % line coverage in a
  ``coverage.xml`` (Cobertura, written by ``coverage xml``) when one exists;
- ``security``: ruff's flake8-bandit rules (``S``), ``pip-audit`` when installed (it needs
  network for the advisory database).

The ``git grep`` signals read the ``HEAD`` commit; ruff, pip-audit and ``coverage.xml`` read
the files of the directory given (in a mission: the auxiliary worktree at ``mc/green``; for
``mc discover``: the target's working tree). Nothing is written.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

TOOL_TIMEOUT = 120.0
MAX_PER_KIND = 10
COVERAGE_FLOOR = 0.5
TODO_RE = r"\b(TODO|FIXME|XXX|HACK)\b"
SKIP_RE = r"(pytest\.mark\.skip|pytest\.skip\(|unittest\.skip|\bxit\(|\bit\.skip\(|\bdescribe\.skip\(|\btest\.skip\()"


@dataclass
class Finding:
    """One candidate backlog item with its evidence (file:line, tool output)."""

    track: str
    title: str
    evidence: str
    impact: int = 2
    effort: int = 2
    tool: str = ""


@dataclass
class Signals:
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # missing tools, skipped steps


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                              timeout=TOOL_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


def find_tool(name: str) -> str | None:
    """``name`` on PATH, else beside this Python (a tool installed in mc's own environment)."""
    found = shutil.which(name)
    if found:
        return found
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else None


def tracked_files(repo: Path) -> list[str]:
    proc = _run(["git", "ls-files", "-z"], repo)
    return [p for p in (proc.stdout.split("\0") if proc and proc.returncode == 0 else []) if p]


def _git_grep(repo: Path, pattern: str) -> list[tuple[str, int, str]]:
    proc = _run(["git", "grep", "-n", "-I", "-E", pattern, "HEAD", "--", "."], repo)
    hits = []
    for line in (proc.stdout.splitlines() if proc and proc.returncode == 0 else []):
        # HEAD:path:line:text
        parts = line.split(":", 3)
        if len(parts) == 4 and parts[2].isdigit():
            hits.append((parts[1], int(parts[2]), parts[3].strip()))
    return hits


def todo_comments(repo: Path, out: Signals) -> None:
    hits = [h for h in _git_grep(repo, TODO_RE) if not h[0].endswith((".md", ".txt", ".rst"))]
    for path, line, text in hits[:MAX_PER_KIND]:
        words = re.split(TODO_RE, text, maxsplit=1)
        gist = " ".join(words[-1].strip(" :-#/*").split())[:100] or text[:100]
        out.findings.append(Finding("quality", f"Resolve TODO in {path}:{line}: {gist}",
                                    f"{path}:{line}: {text[:300]}", impact=2, effort=2, tool="git grep"))
    if len(hits) > MAX_PER_KIND:
        out.notes.append(f"TODO/FIXME: {len(hits)} found, the first {MAX_PER_KIND} taken")


def ruff_findings(repo: Path, out: Signals, *, select: str | None, track: str) -> None:
    if not any(p.endswith(".py") for p in tracked_files(repo)):
        out.notes.append(f"ruff ({track}): no Python files, not applicable")
        return
    ruff = find_tool("ruff")
    if ruff is None:
        out.notes.append(f"ruff ({track}): not installed (pip install ruff); step skipped")
        return
    argv = [ruff, "check", "--output-format", "json", "--exit-zero", "--no-cache"]
    if select:
        argv += ["--select", select]
    proc = _run(argv + ["."], repo)
    try:
        results = json.loads(proc.stdout) if proc else None
    except json.JSONDecodeError:
        results = None
    if not isinstance(results, list):
        out.notes.append(f"ruff ({track}): could not run: {(proc.stderr if proc else 'timeout')[:200]}")
        return
    by_code: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        by_code[str(r.get("code") or "syntax")].append(r)
    for code, items in sorted(by_code.items(), key=lambda kv: -len(kv[1]))[:MAX_PER_KIND]:
        where = [f"{Path(i['filename']).resolve().relative_to(repo.resolve())}:"
                 f"{i['location']['row']}: {code} {i['message']}" for i in items[:5]]
        more = f"\n... and {len(items) - 5} more" if len(items) > 5 else ""
        out.findings.append(Finding(
            track, f"Fix {len(items)} ruff {code} finding{'s' if len(items) > 1 else ''} "
            f"({items[0]['message'][:80]})", "\n".join(where) + more,
            impact=4 if track == "security" else 2, effort=1 if len(items) < 5 else 2, tool="ruff"))


def skipped_tests(repo: Path, out: Signals) -> None:
    for path, line, text in _git_grep(repo, SKIP_RE)[:MAX_PER_KIND]:
        out.findings.append(Finding("tests", f"Re-enable the skipped test at {path}:{line}",
                                    f"{path}:{line}: {text[:300]}", impact=2, effort=2, tool="git grep"))


def failing_tests(failing: list[str] | None, out: Signals) -> None:
    """``failing``: the test ids the last verification named (``None``: unknown)."""
    if failing is None:
        out.notes.append("failing tests: no verification recorded yet")
        return
    for test in failing[:MAX_PER_KIND]:
        out.findings.append(Finding("tests", f"Fix the failing test {test}",
                                    f"last verification: {test} failed", impact=4, effort=2,
                                    tool="verification"))


def coverage_gaps(repo: Path, out: Signals) -> None:
    report = repo / "coverage.xml"
    if not report.is_file():
        out.notes.append("coverage: no coverage.xml in the target (run the tests under "
                         "`coverage run` then `coverage xml`); step skipped")
        return
    try:
        root = ElementTree.parse(report).getroot()
    except ElementTree.ParseError as exc:
        out.notes.append(f"coverage: coverage.xml unreadable: {exc}")
        return
    low = []
    for cls in root.iter("class"):
        rate = float(cls.get("line-rate") or 1.0)
        if rate < COVERAGE_FLOOR:
            low.append((rate, cls.get("filename") or "?"))
    for rate, name in sorted(low)[:MAX_PER_KIND]:
        out.findings.append(Finding("tests", f"Raise test coverage of {name}",
                                    f"coverage.xml: {name} line-rate {rate:.0%}", impact=3,
                                    effort=3, tool="coverage"))


def pip_audit(repo: Path, out: Signals) -> None:
    files = tracked_files(repo)
    if "requirements.txt" not in files and "pyproject.toml" not in files:
        out.notes.append("pip-audit: no requirements.txt or pyproject.toml, not applicable")
        return
    tool = find_tool("pip-audit")
    if tool is None:
        out.notes.append("pip-audit: not installed (pip install pip-audit); dependency audit skipped")
        return
    argv = [tool, "-f", "json", "--progress-spinner", "off"]
    argv += ["-r", "requirements.txt"] if "requirements.txt" in files else ["."]
    proc = _run(argv, repo)
    try:
        data = json.loads(proc.stdout) if proc else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        out.notes.append(f"pip-audit: could not run (it needs network): "
                         f"{(proc.stderr if proc else 'timeout').strip()[:200]}")
        return
    for dep in data.get("dependencies", []):
        for vuln in dep.get("vulns", [])[:3]:
            fix = ", ".join(vuln.get("fix_versions") or []) or "no fix yet"
            out.findings.append(Finding(
                "security", f"Upgrade {dep['name']} {dep.get('version', '')} ({vuln.get('id')})",
                f"pip-audit: {dep['name']} {dep.get('version', '')} {vuln.get('id')}: fixed in {fix}",
                impact=5, effort=1, tool="pip-audit"))


def collect(repo: Path, tracks: list[str], *, failing: list[str] | None = None) -> Signals:
    """The static signals of ``tracks`` for the repository at ``repo``."""
    out = Signals()
    if "quality" in tracks:
        ruff_findings(repo, out, select=None, track="quality")
        todo_comments(repo, out)
    if "tests" in tracks:
        failing_tests(failing, out)
        skipped_tests(repo, out)
        coverage_gaps(repo, out)
    if "security" in tracks:
        ruff_findings(repo, out, select="S", track="security")
        pip_audit(repo, out)
    return out
