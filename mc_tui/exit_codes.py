"""Process exit codes shared by every command."""

EXIT_OK = 0
EXIT_FAILED = 1  # the mission failed or stalled
EXIT_USAGE = 2  # usage or configuration error
EXIT_INTERRUPTED = 130  # Ctrl-C
