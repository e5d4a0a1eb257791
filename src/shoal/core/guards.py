"""Guards against data loss by numbers: the mass-delete rule (SPEC, Safety rails).

One rule for every source of deletions: the scanner (files gone from the disk) and the pull
(deletions, or replacements of non-empty files with empty ones, pushed by other devices). Pure:
the callers count; this module decides and words the pause reason.
"""

from __future__ import annotations

#: A batch must remove more than this many files to be a mass delete.
MASS_DELETE_MIN = 10
#: The prefix of every mass-delete pause reason: a folder paused with it stays paused until the
#: user confirms with `shoal sync --now --allow-mass-delete`.
MASS_DELETE_PREFIX = "mass-delete"
CONFIRM_HINT = "confirm with `shoal sync --now --allow-mass-delete`"


def is_mass_delete(removed: int, live: int) -> bool:
    """Whether removing `removed` of a folder's `live` files is a mass delete: more than
    MASS_DELETE_MIN files and more than half of the folder. Raises nothing."""
    return removed > MASS_DELETE_MIN and removed * 2 > live


def mass_delete_reason(removed: int, live: int, how: str = "deleted") -> str:
    """The pause reason shown by `shoal status` and `shoal sync --now`; `how` says what would
    happen to the files ("deleted", "deleted or emptied by changes from other devices (...)").
    Raises nothing."""
    return (f"{MASS_DELETE_PREFIX}: {removed} of {live} files would be {how}; paused ({CONFIRM_HINT})")


def is_mass_delete_pause(reason: str | None) -> bool:
    """Whether a folder's pause reason is a mass-delete pause (lifted only by the user)."""
    return bool(reason) and reason.startswith(MASS_DELETE_PREFIX)
