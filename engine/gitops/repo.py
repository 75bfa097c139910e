"""Read-mostly access to the target repository through pygit2.

``GitRepo`` only reads objects and writes refs under ``refs/heads/mc/``; it never
checks out, resets, stashes or cleans the target's own working tree, and never
moves the user's current branch.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pygit2
from pygit2.enums import DiffStatsFormat, RepositoryOpenFlag

from engine.gitops.cli import git_env
from engine.gitops.errors import GitError
from engine.gitops.submodules import declarations, gitlinks, unknown_commits

GREEN_REF = "refs/heads/mc/green"
WORKING_REF = "refs/heads/mc/working"
OWNED_PREFIX = "refs/heads/mc/"
HEX = frozenset("0123456789abcdef")
CHANGED_PATHS_MEMO = 4096  # (base, head) pairs changed_paths and diff_stat remember
ANCESTRY_MEMO = 65536  # commit pairs GitRepo.is_ancestor remembers


@dataclass(frozen=True)
class DiffStat:
    """Size of a change: files touched, lines added and removed, and git's summary text."""

    files: int
    insertions: int
    deletions: int
    text: str


def full_ref(ref: str) -> str:
    """``mc/green`` -> ``refs/heads/mc/green``; full ``refs/...`` names pass through."""
    return ref if ref.startswith("refs/") else f"refs/heads/{ref}"


def open_repository(path: Path) -> pygit2.Repository:
    """Open exactly ``path`` (no upward search) or raise a user-facing :class:`GitError`."""
    if not Path(path).exists():
        raise GitError(f"{path} does not exist")
    try:
        return pygit2.Repository(str(path), RepositoryOpenFlag.NO_SEARCH)
    except (pygit2.GitError, KeyError) as exc:
        detail = str(exc).removeprefix(f"{path}: ")
        for marker, what in UNSUPPORTED_FORMATS:
            if marker in detail:
                raise GitError(
                    f"{path} uses {what} ({detail}), which mission control cannot work "
                    "with (its git library, libgit2, does not support it)"
                ) from None
        raise GitError(f"{path} is not a git repository") from None


# What libgit2 refuses to open, in the words of its error message, and what it means.
UNSUPPORTED_FORMATS = (
    ("object format", "the SHA-256 object format"),
    ("extensions.partialclone", "a partial clone (objects fetched on demand); make a "
     "full clone, or `git fetch --refetch` without a filter"),
    ("extensions.refstorage", "the reftable ref storage; convert it with "
     "`git refs migrate --ref-format=files`"),
    ("extension", "a repository extension"),
)


def common_dir(repo: pygit2.Repository) -> Path:
    """The shared git dir (objects, refs) of ``repo``, also when it is a linked worktree."""
    git_dir = Path(repo.path)
    commondir = git_dir / "commondir"
    if commondir.is_file():
        return (git_dir / commondir.read_text().strip()).resolve()
    return git_dir


VIEW_DIR = ("mc", "view")
_view_lock = threading.Lock()


def object_view(repo: pygit2.Repository, attributes: pygit2.Tree | None = None) -> pygit2.Repository:
    """A handle for tree-to-tree diffs and in-memory merges that never reads the user's index.

    libgit2 reads a repository's index for attributes (diff and merge drivers) even there,
    and fails on index extensions it does not know: a sparse index (``sdir``), a split index
    (``link``). This handle is a private bare repository (``<common git dir>/mc/view``) whose
    object database is the target's own (objects written through it land in the target) and
    whose index lives only in memory, filled from ``attributes`` (a tree: the candidate or the
    head being diffed) so its ``.gitattributes`` apply (``merge=union``, ``-diff``).
    A new handle per use: libgit2 caches attributes per index file.
    """
    common = common_dir(repo)
    path = common.joinpath(*VIEW_DIR)
    with _view_lock:
        if not (path / "HEAD").is_file():
            pygit2.init_repository(str(path), bare=True)
    view = pygit2.Repository(str(path), RepositoryOpenFlag.NO_SEARCH | RepositoryOpenFlag.BARE)
    view.set_odb(pygit2.Odb(str(common / "objects")))
    if attributes is not None:
        view.index.read_tree(attributes)
    return view


class GitRepo:
    """The target repository. All ref writes are confined to ``refs/heads/mc/*``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).resolve()
        self.pygit = open_repository(self.path)
        # (base sha, head sha) -> changed paths: a diff of two commits never changes
        self._changed: dict[tuple[str, str], tuple[str, ...]] = {}
        self._stats: dict[tuple[str, str], DiffStat] = {}  # (base sha, head sha) -> its size
        # (ancestor, descendant) commit ids -> whether one is an ancestor of the other
        self._ancestry: dict[tuple[pygit2.Oid, pygit2.Oid], bool] = {}

    # ------------------------------------------------------------------ refs
    def _resolve(self, rev: str) -> pygit2.Oid:
        try:
            return self.pygit.revparse_single(rev).peel(pygit2.Commit).id
        except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
            raise GitError(f"unknown revision {rev!r}") from None

    def ref_head(self, ref: str) -> str | None:
        """The commit a branch or ref points at, or ``None`` when it does not exist."""
        for name in (full_ref(ref), ref):
            try:
                reference = self.pygit.references[name]
            except (KeyError, pygit2.InvalidSpecError, ValueError):
                continue
            return str(reference.peel(pygit2.Commit).id)
        return None

    def movable_ref(self, ref: str) -> str:
        """The full name of ``ref`` if mission control may move it, else :class:`GitError`.

        Only ``refs/heads/mc/*`` qualify, and never the branch checked out in the
        user's own working tree.
        """
        name = full_ref(ref)
        if not name.startswith(OWNED_PREFIX):
            raise GitError(f"refusing to move {name}: mission control only owns refs/heads/mc/*")
        self._refuse_if_checked_out_here(name)
        return name

    def set_owned_ref(self, ref: str, sha: str, message: str) -> None:
        """Force a ref we own (``refs/heads/mc/*``) to ``sha``."""
        name = self.movable_ref(ref)
        self.pygit.create_reference_direct(name, pygit2.Oid(hex=sha), True, message=message)

    def compare_and_swap(self, ref: str, new: str, old: str, message: str) -> None:
        """Atomically move an owned ref from ``old`` to ``new`` (``git update-ref``)."""
        name = self.movable_ref(ref)
        proc = subprocess.run(
            update_ref_args(name, new, old, message),
            cwd=self.path, capture_output=True, text=True, env=git_env(),
        )
        if proc.returncode != 0:
            raise GitError(cas_error(name, new, old, proc.stderr))

    def _refuse_if_checked_out_here(self, name: str) -> None:
        """The user's current branch is never moved, even if it is one of ours."""
        try:
            if not self.pygit.head_is_detached and self.pygit.head.name == name:
                raise GitError(f"{name} is checked out in {self.path}; switch branch first")
        except pygit2.GitError:  # unborn HEAD
            pass

    def clear_stale_locks(self) -> list[str]:
        """Remove lock files a killed mc left on refs it owns (``refs/heads/mc/*``) and in its
        worktrees' git dirs. Call only while holding the mission (no other mc process runs)."""
        git_dir = common_dir(self.pygit)  # the target may itself be a linked worktree
        notes = []
        candidates = list((git_dir / "refs" / "heads" / "mc").rglob("*.lock"))
        worktrees = git_dir / "worktrees"
        if worktrees.is_dir():
            for wt in worktrees.iterdir():
                if wt.name.startswith("mc-"):
                    candidates += [wt / "index.lock", wt / "HEAD.lock"]
        for lock in candidates:
            if lock.exists():
                lock.unlink()
                notes.append(f"removed stale lock {lock.relative_to(git_dir)}")
        return notes

    def ensure_green(self, base_branch: str) -> str:
        """Create ``mc/green`` and ``mc/working`` from ``base_branch`` if missing; return green."""
        green = self.ref_head(GREEN_REF)
        if green is None:
            base = self.ref_head(f"refs/heads/{base_branch}")
            if base is None:
                raise GitError(f"branch {base_branch!r} not found in {self.path}")
            self.set_owned_ref(GREEN_REF, base, f"mc: green from {base_branch}")
            green = base
        if self.ref_head(WORKING_REF) is None:
            self.set_owned_ref(WORKING_REF, green, "mc: working from green")
        return green

    def green_head(self) -> str:
        green = self.ref_head(GREEN_REF)
        if green is None:
            raise GitError("mc/green does not exist yet (call ensure_green first)")
        return green

    def delete_branch(self, name: str) -> None:
        """Delete a local branch we created (no-op when it is already gone)."""
        ref = full_ref(name)
        if ref not in self.pygit.references:
            return
        branch = self.pygit.branches.local.get(ref.removeprefix("refs/heads/"))
        if branch is not None and branch.is_checked_out():
            raise GitError(f"branch {name!r} is checked out in a worktree; release it first")
        self.pygit.references.delete(ref)

    # ------------------------------------------------------------------ history
    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """True when ``ancestor`` is reachable from ``descendant`` (also when equal).
        Memoised by commit id: two commits' ancestry never changes, and a history walk was
        the event loop's largest single cost in the fleet benchmark (docs/scaling.md)."""
        a, d = self._resolve(ancestor), self._resolve(descendant)
        if a == d:
            return True
        key = (a, d)
        known = self._ancestry.get(key)
        if known is None:
            known = self.pygit.descendant_of(d, a)
            if len(self._ancestry) >= ANCESTRY_MEMO:
                self._ancestry = {}
            self._ancestry[key] = known
        return known

    def contains(self, tip: str, commit: str) -> bool:
        """Whether ``commit`` is ``tip`` or one of its ancestors; False when either is not a
        commit of this repository (a head that was never fetched, a deleted branch's)."""
        try:
            return self.is_ancestor(commit, tip)
        except GitError:
            return False

    def commits_between(self, base: str, head: str) -> int:
        """Commits reachable from ``head`` but not from ``base``."""
        walker = self.pygit.walk(self._resolve(head))
        walker.hide(self._resolve(base))
        return sum(1 for _ in walker)

    # ------------------------------------------------------------------ diffs
    def _diff(self, base: str, head: str, *, renames: bool = True) -> pygit2.Diff:
        base_tree = self.pygit[self._resolve(base)].peel(pygit2.Tree)
        head_tree = self.pygit[self._resolve(head)].peel(pygit2.Tree)
        view = object_view(self.pygit, attributes=head_tree)  # never the user's index
        diff = view.diff(view[base_tree.id], view[head_tree.id])
        if renames:
            diff.find_similar()
        return diff

    def diff_stat(self, base: str, head: str) -> DiffStat:
        """The size of the change from ``base`` to ``head`` (with rename detection). Memoised
        for two full commit ids: a finished unit's is read by the large-merge gate's check
        and again at its submit (each a tree diff and an object view; ``bench_engine_overhead``)."""
        def compute() -> DiffStat:
            stats = self._diff(base, head).stats
            text = stats.format(DiffStatsFormat.FULL | DiffStatsFormat.INCLUDE_SUMMARY, 80)
            return DiffStat(stats.files_changed, stats.insertions, stats.deletions, text)

        return self._per_commit_pair(self._stats, base, head, compute)

    @staticmethod
    def _per_commit_pair(memo: dict[tuple[str, str], Any], base: str, head: str,
                         compute: Callable[[], Any]) -> Any:
        """``compute()``, remembered in ``memo`` when ``base`` and ``head`` are both full
        commit ids (what two commits' diff says never changes; a ref is computed every time).
        ``memo`` is emptied when it holds ``CHANGED_PATHS_MEMO`` pairs: a bound, not a policy."""
        key = (base, head)
        fixed = all(len(rev) == 40 and all(c in HEX for c in rev) for rev in key)
        if fixed and (known := memo.get(key)) is not None:
            return known
        value = compute()
        if fixed:
            if len(memo) >= CHANGED_PATHS_MEMO:
                memo.clear()
            memo[key] = value
        return value

    def diff_text(self, base: str, head: str, max_bytes: int = 200_000) -> str:
        """The unified diff, cut at ``max_bytes`` with a marker saying so."""
        patch = self._diff(base, head).patch or ""
        data = patch.encode("utf-8", "replace")
        if len(data) <= max_bytes:
            return patch
        cut = data[:max_bytes].decode("utf-8", "ignore")
        return f"{cut}\n[... diff truncated: {len(data) - max_bytes} more bytes]\n"

    def removed_submodules(self, base: str, head: str) -> list[str]:
        """Submodule paths whose gitlink ``head`` deletes (or turns into something else)
        while its ``.gitmodules`` still declares them: a submodule lost by accident."""
        base_tree = self.pygit[self._resolve(base)].peel(pygit2.Tree)
        head_tree = self.pygit[self._resolve(head)].peel(pygit2.Tree)
        before = gitlinks(base_tree)
        if not before:
            return []
        kept = {sub.path for sub in gitlinks(head_tree)}
        declared = {path for _, path in declarations(head_tree)}
        return [s.path for s in before if s.path not in kept and s.path in declared]

    def unknown_submodule_commits(self, base: str, head: str) -> list[tuple[str, str]]:
        """``(path, commit)`` of gitlinks ``head`` moves to a commit the user's own clone of
        that submodule does not have (worktrees could not check it out)."""
        before = self.pygit[self._resolve(base)].peel(pygit2.Tree)
        after = self.pygit[self._resolve(head)].peel(pygit2.Tree)
        sources = common_dir(self.pygit) / "modules"
        return [(s.path, s.commit) for s in unknown_commits(before, after, sources, self.path)]

    def changed_paths(self, base: str, head: str) -> list[str]:
        """Every path the change from ``base`` to ``head`` adds, deletes or modifies (a rename
        is its old and its new path: no rename detection is needed for the set). Memoised for
        two full commit ids (the engine asks for a finished unit's paths again whenever a
        sibling finishes: ``engine/checks.py own_paths``); a ref is diffed every time."""
        def compute() -> tuple[str, ...]:
            found: dict[str, None] = {}
            for delta in self._diff(base, head, renames=False).deltas:
                for path in (delta.old_file.path, delta.new_file.path):
                    if path:
                        found[path] = None
            return tuple(found)

        return list(self._per_commit_pair(self._changed, base, head, compute))


def update_ref_args(name: str, new: str, old: str, message: str) -> list[str]:
    return ["git", "update-ref", "-m", message, name, new, old]


def cas_error(name: str, new: str, old: str, detail: str) -> str:
    return f"could not move {name} from {old[:10]} to {new[:10]}: {detail.strip()}"
