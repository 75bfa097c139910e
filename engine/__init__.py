"""Mission Control engine: no UI imports here, ever (a test enforces it).

``engine.__version__`` is read from the installed package metadata on first access
(``importlib.metadata`` costs ~30 ms to import; ``mc`` does not need it before its first frame).
"""

from __future__ import annotations


def __getattr__(name: str) -> str:
    if name != "__version__":
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("mission-control")
    except PackageNotFoundError:  # running from a source tree without install
        found = "0.0.0+local"
    globals()["__version__"] = found
    return found
