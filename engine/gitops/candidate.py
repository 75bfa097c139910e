"""Building a merge candidate in memory: no checkout, no index file, no working tree.

Each branch is merged onto the running candidate with ``Repository.merge_commits``
(a real 3-way merge against their merge base, renames detected) and recorded as a
merge commit with two parents (candidate, branch head). Even when a fast-forward
would be possible a merge commit is made, so every unit enters ``mc/green`` as
exactly one merge commit: easy to count, bisect and revert. A branch that conflicts
is reported with its paths and left out; the branches after it still get merged.

A branch may *require* commits (a stacked branch: built on other units' work that was
not in ``mc/green`` yet, ``engine/stacking.py``): it is merged only onto a candidate that
already contains every one of them, else it is *held* (left out, not a conflict), so a
merge never carries another change's commits into ``mc/green`` ahead of that change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pygit2

from engine.gitops.identity import engine_signature


@dataclass
class ChainLink:
    key: int  # the merge row id
    commit: str  # the candidate after merging this branch


@dataclass
class Chain:
    base: str
    links: list[ChainLink] = field(default_factory=list)
    conflicts: dict[int, list[str]] = field(default_factory=dict)
    already_in: list[int] = field(default_factory=list)  # head already reachable from base
    held: list[int] = field(default_factory=list)  # a required commit is not in the candidate

    def prefix(self, k: int) -> str:
        """The candidate after the first ``k`` merged branches (``base`` when k == 0)."""
        return self.base if k == 0 else self.links[k - 1].commit


def conflict_paths(index: pygit2.Index) -> list[str]:
    paths: list[str] = []
    if index.conflicts is None:
        return paths
    for ancestor, ours, theirs in index.conflicts:
        entry = ours or theirs or ancestor
        if entry is not None and entry.path not in paths:
            paths.append(entry.path)
    return sorted(paths)


def contains(repo: pygit2.Repository, tip: pygit2.Oid, commit: str) -> bool:
    """Whether ``commit`` is ``tip`` or one of its ancestors."""
    oid = pygit2.Oid(hex=commit)
    return oid == tip or repo.descendant_of(tip, oid)


def build_chain(
    repo: pygit2.Repository, base: str, branches: list[tuple[int, str, str]],
    requires: dict[int, list[str]] | None = None,
) -> Chain:
    """Merge ``(key, label, head)`` branches one after another onto ``base``; a key in
    ``requires`` is merged only onto a candidate containing all its commits (else held)."""
    chain = Chain(base=base)
    current = repo[pygit2.Oid(hex=base)].peel(pygit2.Commit)
    for key, label, head in branches:
        head_oid = pygit2.Oid(hex=head)
        if head_oid == current.id or repo.descendant_of(current.id, head_oid):
            chain.already_in.append(key)
            continue
        if not all(contains(repo, current.id, c) for c in (requires or {}).get(key, ())):
            chain.held.append(key)
            continue
        index = repo.merge_commits(current, head_oid)
        if index.conflicts is not None:
            chain.conflicts[key] = conflict_paths(index)
            continue
        tree = index.write_tree(repo)
        sig = engine_signature()
        message = f"mc: merge {label}\n\nMerged-Head: {head}\n"
        oid = repo.create_commit(None, sig, sig, message, tree, [current.id, head_oid])
        current = repo[oid].peel(pygit2.Commit)
        chain.links.append(ChainLink(key=key, commit=str(oid)))
    return chain


def merge_heads(repo: pygit2.Repository, base: str, heads: list[tuple[str, str]],
                ) -> tuple[str | None, list[str]]:
    """``base`` with each ``(label, head)`` merged in, in memory (the stack base of a stacked
    branch: ``engine/stacking.py``): (the resulting commit, written but named by no ref
    yet, or None on a conflict; the conflicting paths). ``repo``: an ``object_view``."""
    chain = build_chain(repo, base, [(k, label, head) for k, (label, head) in enumerate(heads)])
    if chain.conflicts:
        return None, sorted({p for paths in chain.conflicts.values() for p in paths})
    return chain.prefix(len(chain.links)), []
