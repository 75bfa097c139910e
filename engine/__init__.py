"""Mission Control engine: no UI imports here, ever (a test enforces it)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mission-control")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+local"
