"""Explicit git identities, so nothing depends on the machine's user.name / user.email."""

from __future__ import annotations

import pygit2

from engine.clock import commit_time

ENGINE_NAME = "Mission Control"
ENGINE_EMAIL = "mission-control@localhost"
AGENT_NAME = "mc-agent"
AGENT_EMAIL = "mc-agent@localhost"


def engine_signature() -> pygit2.Signature:
    """The committer of merge candidates (now: ``engine.clock``)."""
    return pygit2.Signature(ENGINE_NAME, ENGINE_EMAIL, *commit_time())


def agent_signature() -> pygit2.Signature:
    """The author of leftovers committed on behalf of an agent (now: ``engine.clock``)."""
    return pygit2.Signature(AGENT_NAME, AGENT_EMAIL, *commit_time())
