"""Mission Control widgets: one pane per module, plus the UI-free mission state they render."""
