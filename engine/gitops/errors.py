"""The one exception type the git layer raises to its callers."""

from __future__ import annotations


class GitError(RuntimeError):
    """A git problem phrased for the user (e.g. ``/x is not a git repository``)."""
