"""The one exception type for mistakes a user can fix (bad file, bad option).

Entry points print its message as a single line and exit with status 2; any other
exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input: message names the file or option and the fix."""
