"""Declared contracts between the dashboard's screens and its widgets."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Filterable(Protocol):
    """A list the ``/`` filter bar can narrow: the plan tree, the tables, the logs.

    ``filter_text`` is the active needle ("" = everything shown); ``set_filter`` applies a new
    one (case-insensitive substring match on what the row shows).
    """

    filter_text: str

    def set_filter(self, text: str) -> None: ...
