"""Mission Control themes: Textual theme definitions and the app stylesheet."""

from themes.mission_control import MISSION_CONTROL_DARK, MISSION_CONTROL_LIGHT, STYLESHEET, THEMES

__all__ = ["MISSION_CONTROL_DARK", "MISSION_CONTROL_LIGHT", "STYLESHEET", "THEMES"]
