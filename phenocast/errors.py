"""The one error type users see, and the helper that turns it into a one-line message and exit code 2."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

EXIT_BAD_INPUT = 2


class PhenocastError(ValueError):
    """Bad input or configuration: the message says what was expected, what was found, where, what to do.

    Scripts catch it at the top, print its message on one line and exit with code 2, without a traceback.
    """


def cli_main(function: Callable[..., int | None]) -> Callable[..., int]:
    """Decorate a script's ``main``: ``PhenocastError`` → one line on stderr and exit code 2.

    Args:
      function: the script's main function; it returns an exit code or None (= 0).

    Returns:
      A function that returns the exit code instead of raising for bad input.
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs) -> int:
        try:
            code = function(*args, **kwargs)
        except PhenocastError as error:
            message = " ".join(str(error).split())
            print(f"error: {message}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt:
            print("interrupted: rerun the same command to resume", file=sys.stderr)
            return 130
        return 0 if code is None else int(code)

    return wrapper
