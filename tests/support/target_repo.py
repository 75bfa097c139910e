"""The tiny target repository the tests' missions run against (real git, committed on ``main``).

:func:`make_target` builds ``root/repo``: a Python project (``app/greet.py``) with unittest tests,
one commit on ``main``; with ``origin=True`` it is also pushed to a bare ``root/origin.git``.
:func:`git` runs git with a fixed test identity (``GIT_ENV``) and returns its stripped stdout.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@localhost",
    "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@localhost",
}


def git(repo: Path, *args: str) -> str:
    """``git *args`` in ``repo`` (raises ``CalledProcessError`` on failure) -> stripped stdout."""
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True,
        env={**os.environ, **GIT_ENV},
    ).stdout.strip()


def make_target(root: Path, origin: bool = False) -> Path:
    """``root/repo``: a tiny Python project with unittest tests, committed on ``main``; with
    ``origin``, pushed to the bare ``root/origin.git`` (its ``origin`` remote)."""
    repo = root / "repo"
    (repo / "app").mkdir(parents=True)
    (repo / "tests").mkdir()
    (repo / "app" / "__init__.py").write_text("")
    (repo / "app" / "greet.py").write_text('def greet(name):\n    return f"hello {name}"\n')
    (repo / "tests" / "__init__.py").write_text("")
    (repo / "tests" / "test_greet.py").write_text(
        "import unittest\n\nfrom app.greet import greet\n\n\n"
        "class GreetTest(unittest.TestCase):\n"
        "    def test_greet(self):\n        self.assertEqual(greet('x'), 'hello x')\n"
    )
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    if origin:
        git(root, "init", "-q", "--bare", "origin.git")
        git(repo, "remote", "add", "origin", str(root / "origin.git"))
        git(repo, "push", "-q", "origin", "main")
    return repo
