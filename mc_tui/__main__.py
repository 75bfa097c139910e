"""`python -m mc_tui` is the same as `mc`."""

from mc_tui.cli import main

main()
