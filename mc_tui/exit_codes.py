"""Process exit codes shared by every command."""

EXIT_OK = 0
EXIT_FAILED = 1  # the mission failed, stopped or stalled
EXIT_USAGE = 2  # usage or configuration error
EXIT_NOT_PUSHED = 3  # the objective is met, but mc/green could not be pushed (the reason is the outcome)
EXIT_INTERRUPTED = 130  # Ctrl-C
