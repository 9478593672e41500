"""The one base class of the errors a user can fix, shared by every stage and layer."""

from __future__ import annotations


class UserError(Exception):
    """Input or state the user can fix (a bad path, an empty lake, a taken name); the message says how.

    Every stage's such errors derive from it, so the CLI turns them all into one line and exit 1.
    """
