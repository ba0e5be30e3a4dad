"""The one exception the command line reports as ``captum-qubo <command>: error: ...`` with exit status 2."""


class CliError(ValueError):
    """A problem with the command's arguments or inputs, worded with the command line's own flag names."""
