"""The fast clean checkout of mc's worktrees against libgit2's forced checkout.

Two linked worktrees start at the same commit, get the same mess made in them, and
are moved to the same target: one with ``clean_checkout`` (the fast path), one with
libgit2's ``checkout_tree(FORCE | REMOVE_UNTRACKED)``. Files, modes, symlinks, empty
folders, ignored files and the index must come out identical, and git must find the
index's stat data valid (``git diff-files`` is empty without a refresh).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import pygit2
import pytest
from pygit2.enums import CheckoutStrategy
from test_git_support import git, init_repo

from engine.gitops.checkout import fast_clean_checkout
from engine.gitops.worktrees import clean_checkout


def tree_snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` except .git: kind, mode bits, content or link target."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d != ".git"]
            filenames = [f for f in filenames if f != ".git"]
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = (Path(rel_dir) / name).as_posix().removeprefix("./")
            info = full.lstat()
            if stat.S_ISLNK(info.st_mode):
                out[rel] = "link:" + os.readlink(full)
            elif stat.S_ISDIR(info.st_mode):
                out[rel] = "dir"
            else:
                out[rel] = f"{info.st_mode & 0o111:o}:" + full.read_text()
    return out


def commit_snapshot(repo: Path, commit: str) -> dict[str, str]:
    """What ``tree_snapshot`` shows for the tracked part of a checkout of ``commit``."""
    out: dict[str, str] = {}
    for line in git(repo, "ls-tree", "-r", "-t", commit).splitlines():
        meta, path = line.split("\t", 1)
        mode, kind, sha = meta.split()
        if kind == "tree":
            out[path] = "dir"
        elif mode == "120000":
            out[path] = "link:" + git(repo, "cat-file", "blob", sha)
        else:
            exec_bits = "111" if mode == "100755" else "0"
            out[path] = f"{exec_bits}:" + git(repo, "cat-file", "blob", sha)
    return out


class Twins:
    """A repo with two linked worktrees at ``start``: ``fast`` and ``libgit2``."""

    def __init__(self, tmp: Path, files: dict[str, str], attributes: str | None = None) -> None:
        self.path = tmp / "repo"
        init_repo(self.path, files)
        self.start = git(self.path, "rev-parse", "HEAD").strip()
        self.dirs = {name: tmp / name for name in ("fast", "libgit2")}
        for where in self.dirs.values():
            git(self.path, "worktree", "add", "-q", "--detach", str(where), self.start)

    def commit(self, files: dict[str, str | None], message: str, modes: dict[str, str] | None = None,
               links: dict[str, str] | None = None) -> str:
        """A new commit on main (made in the main checkout, which nobody else uses here)."""
        for name, text in files.items():
            target = self.path / name
            if text is None:
                git(self.path, "rm", "-q", "-r", name)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink():
                target.unlink()
            target.write_text(text)
            git(self.path, "add", name)
        for name, link in (links or {}).items():
            target = self.path / name
            if target.exists() or target.is_symlink():
                target.unlink()
            target.symlink_to(link)
            git(self.path, "add", name)
        for name, mode in (modes or {}).items():
            git(self.path, "update-index", f"--chmod={mode}", name)
            git(self.path, "checkout", "--", name)
        git(self.path, "commit", "-q", "-m", message)
        return git(self.path, "rev-parse", "HEAD").strip()

    def mess(self, fn: Callable[[Path], None]) -> None:
        for where in self.dirs.values():
            fn(where)

    def move(self, target: str) -> bool:
        """Both worktrees to ``target``; True when ``clean_checkout`` took the fast path."""
        results: list[bool] = []

        def spy(wt: pygit2.Repository, commit: pygit2.Commit) -> bool:
            results.append(fast_clean_checkout(wt, commit))
            return results[-1]

        fast = pygit2.Repository(str(self.dirs["fast"]))
        with mock.patch("engine.gitops.worktrees.fast_clean_checkout", spy):
            clean_checkout(fast, fast[pygit2.Oid(hex=target)].peel(pygit2.Commit))
        took_fast = results == [True]
        slow = pygit2.Repository(str(self.dirs["libgit2"]))
        commit = slow[pygit2.Oid(hex=target)].peel(pygit2.Commit)
        slow.checkout_tree(commit, strategy=CheckoutStrategy.FORCE | CheckoutStrategy.REMOVE_UNTRACKED)
        slow.set_head(commit.id)
        self.took_fast = took_fast
        return took_fast

    def assert_same(self, target: str) -> None:
        fast, slow = self.dirs["fast"], self.dirs["libgit2"]
        assert tree_snapshot(fast) == tree_snapshot(slow)
        for where in (fast, slow):
            assert git(where, "rev-parse", "HEAD").strip() == target
            assert git(where, "status", "--porcelain") == ""
        if self.took_fast:  # the index's stat data is valid as written: no refresh needed
            assert git(fast, "diff-files", "--name-only") == ""
        assert git(fast, "ls-files", "-s") == git(slow, "ls-files", "-s")
        ignored = ["status", "--porcelain", "--ignored=matching", "--untracked-files=all"]
        assert git(fast, *ignored) == git(slow, *ignored)


FILES = {
    ".gitignore": "*.cache\nbuild/\n",
    "a.txt": "a\n" * 50,
    "keep.txt": "keep\n",
    "src/m1.py": "one\n",
    "src/m2.py": "two\n",
    "src/deep/m3.py": "three\n",
    "tools/run.sh": "#!/bin/sh\necho run\n",
}


def agent_mess(root: Path) -> None:
    """Edits, a deletion, a staged file, untracked files and folders, empty folders,
    ignored files (in a tracked folder, an untracked one and an ignored one)."""
    (root / "a.txt").write_text("short\n")
    (root / "keep.txt").write_text("edited, same length?\n")
    (root / "src" / "m2.py").unlink()
    (root / "staged.py").write_text("staged\n")
    git(root, "add", "staged.py")
    (root / "new" / "pkg").mkdir(parents=True)
    (root / "new" / "pkg" / "x.py").write_text("x\n")
    (root / "new" / "pkg" / "x.cache").write_text("ignored, in an untracked folder\n")
    (root / "src" / "empty" / "deeper").mkdir(parents=True)
    (root / "top-empty").mkdir()
    (root / "src" / "m1.cache").write_text("ignored\n")
    (root / "build" / "out").mkdir(parents=True)
    (root / "build" / "out" / "lib.so").write_text("ignored folder\n")


def test_matches_libgit2_for_an_ordinary_hand_off(tmp_path: Path) -> None:
    twins = Twins(tmp_path, FILES)
    target = twins.commit(
        {"a.txt": "a\n" * 60, "src/m1.py": "one v2 longer\n", "src/deep/m3.py": None,
         "src/new/m4.py": "four\n", "b.txt": "b\n"},
        "move on", modes={"tools/run.sh": "+x"}, links={"link-to-a": "a.txt"},
    )
    twins.mess(agent_mess)
    assert twins.move(target)  # the fast path handled it
    twins.assert_same(target)
    fast = twins.dirs["fast"]
    assert os.access(fast / "tools" / "run.sh", os.X_OK)
    assert not (fast / "src" / "deep").exists() and not (fast / "top-empty").exists()
    assert not (fast / "new").exists()  # an untracked folder goes whole, ignored files too
    assert (fast / "src" / "m1.cache").exists() and (fast / "build" / "out" / "lib.so").exists()
    # and back again: the exec bit goes, the link goes, m2 comes back
    twins.mess(lambda root: (root / "b.txt").write_text("agent edit\n"))
    assert twins.move(twins.start)
    twins.assert_same(twins.start)
    assert not os.access(fast / "tools" / "run.sh", os.X_OK)


def test_matches_libgit2_when_nothing_changed_but_empty_folders(tmp_path: Path) -> None:
    twins = Twins(tmp_path, FILES)
    twins.mess(lambda root: (root / "src" / "deep" / "new-empty").mkdir())
    assert twins.move(twins.start)
    twins.assert_same(twins.start)


def test_a_symlink_an_agent_left_is_replaced_never_followed(tmp_path: Path) -> None:
    twins = Twins(tmp_path, FILES)
    target = twins.commit({"keep.txt": "keep v2\n", "src/m1.py": "one v2\n"}, "edit")

    def trap(root: Path) -> None:
        outside = tmp_path / f"outside-{root.name}"
        outside.mkdir()
        (outside / "file.txt").write_text("precious\n")
        (outside / "m1.py").write_text("precious too\n")
        (root / "keep.txt").unlink()
        (root / "keep.txt").symlink_to(outside / "file.txt")  # a file turned into a link
        os.rename(root / "src", root / "src-moved")
        (root / "src").symlink_to(outside)  # a folder turned into a link out of the tree

    twins.mess(trap)
    assert twins.move(target)
    fast, outside = twins.dirs["fast"], tmp_path / "outside-fast"
    assert (outside / "file.txt").read_text() == "precious\n"
    assert (outside / "m1.py").read_text() == "precious too\n"
    assert tree_snapshot(fast) == commit_snapshot(twins.path, target)
    assert git(fast, "status", "--porcelain") == "" and git(fast, "diff-files", "--name-only") == ""
    # libgit2's forced checkout writes through the file link (outside the worktree) and
    # leaves both links in place: the pool does not rely on it for this
    assert (tmp_path / "outside-libgit2" / "file.txt").read_text() == "keep v2\n"


def test_type_changes_file_to_folder_and_back(tmp_path: Path) -> None:
    twins = Twins(tmp_path, FILES)
    target = twins.commit({"keep.txt": None, "keep.txt/inner.txt": "now a folder\n",
                           "src/deep/m3.py": None, "src/deep": "now a file\n"}, "type changes")
    fast = twins.dirs["fast"]
    for commit, mess in ((target, lambda: (fast / "src" / "deep" / "scratch.txt").write_text("u\n")),
                         (twins.start, lambda: (fast / "keep.txt" / "more.txt").write_text("u\n"))):
        mess()
        assert twins.move(commit)
        assert tree_snapshot(fast) == commit_snapshot(twins.path, commit)
        assert git(fast, "status", "--porcelain") == "" and git(fast, "diff-files", "--name-only") == ""


def test_content_filters_take_the_libgit2_path(tmp_path: Path) -> None:
    twins = Twins(tmp_path, FILES | {".gitattributes": "*.txt text eol=crlf\n"})
    target = twins.commit({"a.txt": "x\ny\n"}, "crlf on checkout")
    twins.mess(lambda root: None)
    assert not twins.move(target)  # an eol filter applies: the fast path declines
    twins.assert_same(target)
    assert (twins.dirs["fast"] / "a.txt").read_bytes() == b"x\r\ny\r\n"


def test_config_filters_take_the_libgit2_path(tmp_path: Path) -> None:
    twins = Twins(tmp_path, FILES)
    git(twins.path, "config", "core.autocrlf", "true")
    target = twins.commit({"b.txt": "p\nq\n"}, "autocrlf")
    assert not twins.move(target)
    twins.assert_same(target)


def test_a_conflicted_index_takes_the_libgit2_path(tmp_path: Path) -> None:
    twins = Twins(tmp_path, FILES)
    other = twins.commit({"keep.txt": "theirs\n"}, "theirs")

    def conflict(root: Path) -> None:
        (root / "keep.txt").write_text("ours\n")
        git(root, "commit", "-q", "-am", "ours")
        git(root, "merge", "-q", other, check=False)

    twins.mess(conflict)
    assert "UU keep.txt" in git(twins.dirs["fast"], "status", "--porcelain")
    assert not twins.move(twins.start)
    twins.assert_same(twins.start)


def test_the_libgit2_path_never_writes_through_a_link_either(tmp_path: Path) -> None:
    twins = Twins(tmp_path, FILES)
    other = twins.commit({"keep.txt": "theirs\n"}, "theirs")
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    fast = twins.dirs["fast"]
    (fast / "keep.txt").write_text("ours\n")
    git(fast, "commit", "-q", "-am", "ours")
    git(fast, "merge", "-q", other, check=False)
    (fast / "a.txt").unlink()
    (fast / "a.txt").symlink_to(outside)
    wt = pygit2.Repository(str(fast))
    target = wt[pygit2.Oid(hex=twins.start)].peel(pygit2.Commit)
    assert not fast_clean_checkout(wt, target)  # the conflicted index rules out the fast path
    clean_checkout(wt, target)
    assert outside.read_text() == "precious\n"
    assert tree_snapshot(fast) == commit_snapshot(twins.path, twins.start)


@pytest.mark.parametrize("untracked", ["nested/repo"])
def test_a_nested_repository_takes_the_libgit2_path(tmp_path: Path, untracked: str) -> None:
    twins = Twins(tmp_path, FILES)
    twins.mess(lambda root: git(root, "init", "-q", str(root / untracked)))
    print("fast path:", twins.move(twins.start))
    twins.assert_same(twins.start)
