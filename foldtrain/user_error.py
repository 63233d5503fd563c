"""The base of every failure a user causes and can fix: bad input, a wrong switch, a missing or corrupt file.

Entry points print its message as one line (`foldtrain.errors.EXPECTED`). A plain `ValueError` or
`FileNotFoundError` raised anywhere else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(ValueError):
    """A problem the user can fix; the message names the key or file and what to do."""
