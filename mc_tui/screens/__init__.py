"""Mission Control screens: the main dashboard and its modal screens, one per module."""
