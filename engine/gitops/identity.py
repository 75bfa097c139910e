"""Explicit git identities, so nothing depends on the machine's user.name / user.email."""

from __future__ import annotations

import pygit2

ENGINE_NAME = "Mission Control"
ENGINE_EMAIL = "mission-control@localhost"
AGENT_NAME = "mc-agent"
AGENT_EMAIL = "mc-agent@localhost"


def engine_signature() -> pygit2.Signature:
    """The committer of merge candidates (current time)."""
    return pygit2.Signature(ENGINE_NAME, ENGINE_EMAIL)


def agent_signature() -> pygit2.Signature:
    """The author of leftovers committed on behalf of an agent (current time)."""
    return pygit2.Signature(AGENT_NAME, AGENT_EMAIL)
