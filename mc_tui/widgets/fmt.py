"""Small text formatters shared by the panes: durations, money, status icons and colours."""

from __future__ import annotations

from rich.console import RenderableType
from rich.text import Text

STATUS_STYLE = {
    "planned": ("○", "dim"),
    "ready": ("◌", ""),
    "running": ("▶", "bold $primary"),
    "reviewing": ("◎", "$secondary"),
    "queued": ("⋯", "$accent"),
    "merging": ("⇢", "$accent"),
    "verifying": ("⧗", "$warning"),
    "fixup": ("✎", "$warning"),
    "merged": ("✔", "$success"),
    "promoted": ("✔", "$success"),
    "completed": ("✔", "$success"),
    "not_pushed": ("⚠", "bold $warning"),
    "passed": ("✔", "$success"),
    "approved": ("✔", "$success"),
    "failed": ("✘", "$error"),
    "conflict": ("✘", "$error"),
    "error": ("✘", "$error"),
    "timeout": ("⌛", "$error"),
    "denied": ("✘", "$error"),
    "expired": ("⌛", "$warning"),
    "blocked": ("⊘", "$warning"),
    "cancelled": ("–", "dim"),
    "skipped": ("–", "dim"),
    "requeued": ("↺", "$accent"),
    "withdrawn": ("–", "dim"),
    "pending": ("?", "bold $warning"),
    "paused": ("⏸", "$warning"),
    "stopped": ("■", "dim"),
    "stalled": ("■", "$warning"),
    "interrupted": ("■", "$warning"),
    "budget": ("$", "$error"),
    "idle": ("·", "dim"),
    "winner": ("★", "$success"),
    "lost": ("·", "dim"),
    "scored": ("◎", ""),
}

# Theme-independent fallbacks for the $variables above (Rich styles cannot read Textual CSS).
_PALETTE_KEYS = ("primary", "secondary", "accent", "warning", "success", "error")


def duration(seconds: float | None) -> str:
    """``m:ss`` or ``h:mm:ss``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def usd(value: float | None) -> str:
    return f"${(value or 0):.2f}"


def clip(text: str | None, width: int) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def resolve_style(style: str, palette: dict[str, str]) -> str:
    """Replace ``$name`` tokens with colours from ``palette`` (the current theme)."""
    out = []
    for token in style.split():
        if token.startswith("$"):
            token = palette.get(token[1:], "")
        if token:
            out.append(token)
    return " ".join(out)


def status_text(status: str, palette: dict[str, str], *, label: bool = True) -> Text:
    icon, style = STATUS_STYLE.get(status, ("•", ""))
    # assembled (a span, not a base style) so that Text equality sees colour changes
    return Text.assemble((f"{icon} {status}" if label else icon, resolve_style(style, palette)))


def palette_of(theme: object) -> dict[str, str]:
    """The named colours of a Textual Theme (missing ones omitted)."""
    return {k: v for k in _PALETTE_KEYS if (v := getattr(theme, k, None))}


def diff_syntax(code: str, *, dark: bool) -> RenderableType:
    """A unified diff, highlighted for a dark or light theme (on the pane's background).

    ``rich.syntax`` (and pygments) are imported on first use: faster start-up.
    """
    from rich.syntax import Syntax

    return Syntax(code, "diff", theme="ansi_dark" if dark else "ansi_light", background_color="default")
