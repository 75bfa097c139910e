"""The branded Mission Control themes (data only), registered with Textual by the app."""

from __future__ import annotations

from pathlib import Path

from textual.theme import Theme

STYLESHEET = Path(__file__).with_name("mission_control.tcss")

MISSION_CONTROL_DARK = Theme(
    name="mission-control-dark",
    primary="#4FB3FF",
    secondary="#9D7CFF",
    accent="#FFB347",
    warning="#FFC857",
    error="#FF5C6C",
    success="#4CD68A",
    foreground="#DDE6F0",
    background="#0D1320",
    surface="#141C2B",
    panel="#1C2638",
    dark=True,
    variables={
        "footer-key-foreground": "#FFB347",
        "block-cursor-text-style": "bold",
        "mc-graph-budget": "#FF5C6C",
        "mc-graph-spend": "#4FB3FF",
    },
)

MISSION_CONTROL_LIGHT = Theme(
    name="mission-control-light",
    primary="#0B62C4",
    secondary="#6A4BD6",
    accent="#C76A00",
    warning="#B8860B",
    error="#C62839",
    success="#1E8E4E",
    foreground="#1B2330",
    background="#F5F7FA",
    surface="#FFFFFF",
    panel="#E4EAF2",
    dark=False,
    variables={
        "footer-key-foreground": "#C76A00",
        "block-cursor-text-style": "bold",
        "mc-graph-budget": "#C62839",
        "mc-graph-spend": "#0B62C4",
    },
)

THEMES: dict[str, Theme] = {t.name: t for t in (MISSION_CONTROL_DARK, MISSION_CONTROL_LIGHT)}
