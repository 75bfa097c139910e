"""The A2A server (``mc a2a``): missions as A2A tasks, through the official ``a2a-sdk``.

See ``docs/services.md`` (## A2A) for the card, the skills, the task <-> mission mapping and
the security model.
"""
