"""Prompt templates live as Markdown files beside this module.

``render("worker", objective=..., unit_title=...)`` fills ``$name`` placeholders
(``string.Template``; ``$$`` is a literal dollar). Unknown placeholders are an error,
so a template and its caller cannot drift apart silently.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from string import Template

PROMPTS_DIR = Path(__file__).parent


class PromptError(KeyError):
    pass


@cache
def load(name: str) -> Template:
    path = PROMPTS_DIR / f"{name}.md"
    if not path.exists():
        raise PromptError(f"no prompt template named {name!r} in {PROMPTS_DIR}")
    return Template(path.read_text())


def render(name: str, **values: object) -> str:
    try:
        return load(name).substitute({k: str(v) for k, v in values.items()})
    except KeyError as exc:
        raise PromptError(f"prompt {name!r} needs a value for {exc.args[0]!r}") from None


def render_text(text: str, name: str, **values: object) -> str:
    """Render template ``text`` (a variant of template ``name``) like :func:`render`."""
    try:
        return Template(text).substitute({k: str(v) for k, v in values.items()})
    except KeyError as exc:
        raise PromptError(f"prompt {name!r} (variant) needs a value for {exc.args[0]!r}") from None
    except ValueError as exc:
        raise PromptError(f"prompt {name!r} (variant) is not a valid template: {exc}") from None


def placeholders(text: str) -> set[str]:
    """The ``$name`` / ``${name}`` placeholders of a template text."""
    return {m.group("named") or m.group("braced") for m in Template.pattern.finditer(text)
            if m.group("named") or m.group("braced")}


def available() -> list[str]:
    return sorted(p.stem for p in PROMPTS_DIR.glob("*.md"))
