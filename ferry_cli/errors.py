"""What can go wrong, and the exit code each ends with.

0  success (and for `watch`/`apply --wait`: every item of the plan completed)
1  the server refused the request (its `detail` is shown), or it could not be reached
2  bad command line or bad plan file (nothing was sent, or nothing changed)
3  the request worked but the outcome is not a success: validation found blockers, the
   plan was rejected or cancelled, or it ended with items that did not complete
4  gave up waiting (--timeout)
"""

EXIT_OK = 0
EXIT_SERVER = 1
EXIT_INPUT = 2
EXIT_OUTCOME = 3
EXIT_TIMEOUT = 4


class CliError(Exception):
    """An error to show as one message, with an exit code (never a traceback)."""

    exit_code = EXIT_SERVER

    def __init__(self, message: str, *, exit_code: int | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        if exit_code is not None:
            self.exit_code = exit_code


class ApiError(CliError):
    """The server answered with an error status; `message` is its `detail`."""


class NetworkError(CliError):
    """The server could not be reached or did not answer in time."""


class InputError(CliError):
    """The command line or the plan file is wrong."""

    exit_code = EXIT_INPUT
