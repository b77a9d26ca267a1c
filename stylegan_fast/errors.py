"""The one exception type for mistakes in what the user gave us (a file, an argument, a dataset).

The command line prints a :class:`UserError` as one line, ``stylegan-fast <cmd>: error: ...``, and
exits with status 2; anything else that escapes is a bug and keeps its traceback. It derives from
``ValueError`` so that library callers who already catch ``ValueError`` keep working.
"""
from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user: the message names the argument or file and what is wrong."""
