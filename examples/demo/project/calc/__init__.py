"""calc: a tiny calculator library."""

from calc.core import add, subtract

__all__ = [
    "add",
    "subtract",
]
