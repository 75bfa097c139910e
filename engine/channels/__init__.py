"""Approval channels: ways for a person to decide the engine's approvals from elsewhere.

Each channel is a built-in plugin whose observer posts a request when an
``approval.requested`` event arrives, updates it on ``approval.status`` (whoever decided:
the TUI, ``mc approve``, another channel, or the timeout), and runs its own background task
(``run``) that turns the person's answer into ``Store.decide_approval``. All channels decide
the same row; the first decision wins. See ``docs/hitl.md``.

- :mod:`engine.channels.file`: lines appended to ``hitl.approval_file``;
- :mod:`engine.channels.telegram`: a Telegram bot (``[hitl.telegram]``).
"""
