"""The one exception type for mistakes a user can fix (bad file, bad option).

Entry points print its message as a single line and exit with status 2; any other
exception is a bug and keeps its traceback.
"""
import os


class UserError(Exception):
    """A problem with the user's input: message names the file or option and the fix."""


def read_user_file(path: str, kind: str) -> bytes:
    """The bytes of a file the user named; UserError '<path>: <kind> not found' when it
    is absent, '<path>: cannot be read (<reason>)' when the system refuses it."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: {kind} not found")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err.strerror})") from None
