"""``Journal``: the store with everything the daemon does with it, in one class.

Only composes ``lifecycle``, ``queries`` and ``submissions`` over ``store``; no code of its own,
no sqlite3, nothing from outside this package.
"""

from __future__ import annotations

from .lifecycle import Lifecycle
from .queries import Queries
from .submissions import Submissions


class Journal(Lifecycle, Queries, Submissions):
    """The journal of one daemon; see the package docstring. Use ``open``/``open_readonly``."""
