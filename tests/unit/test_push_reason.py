"""One-line reasons for failed pushes from real `git push --porcelain` output."""

from __future__ import annotations

from engine.gitops.push import PushResult, push_reason

NON_BARE = """To /tmp/pr/a
!\tHEAD:refs/heads/master\t[remote rejected] (branch is currently checked out)
Done
remote: error: refusing to update checked out branch: refs/heads/master
error: failed to push some refs to '/tmp/pr/a'"""

BEHIND = """To ../bare
!\trefs/heads/mc/green:refs/heads/main\t[rejected] (fetch first)
Done
error: failed to push some refs to '../bare'
hint: Updates were rejected because the remote contains work that you do not"""


def test_the_remote_reason_on_the_bang_line() -> None:
    assert push_reason(NON_BARE) == "[remote rejected] (branch is currently checked out)"
    assert push_reason(BEHIND) == "[rejected] (fetch first)"


def test_errors_without_a_ref_line() -> None:
    out = "fatal: 'nowhere' does not appear to be a git repository\nfatal: Could not read"
    assert push_reason(out).startswith("fatal: 'nowhere'")
    assert push_reason("") == "git push failed"
    assert PushResult(True, False, "").reason == ""
