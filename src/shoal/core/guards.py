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


#: What to do about a folder's marker (`<folder>/.shoal/folder-id`) before scanning it.
MARKER_OK = "ok"          # the marker names this folder: scan
MARKER_CREATE = "create"  # a folder never seen before: make the folder (if need be) and its marker
MARKER_PAUSE = "pause"    # something is wrong: pause, with the reason


def marker_decision(folder_id: str, *, seen_before: bool, folder_exists: bool, marker: str | None,
                    root: str, marker_path: str) -> tuple[str, str | None]:
    """(MARKER_OK | MARKER_CREATE | MARKER_PAUSE, pause reason) for a folder whose directory
    exists or not, whose marker holds `marker` (None: there is none), and which was synced
    before or not. A folder seen before whose directory or marker is gone is paused, never read
    as "everything was deleted" (an unmounted card, a folder deleted by hand). Raises nothing."""
    if not folder_exists:
        if seen_before:
            return MARKER_PAUSE, f"folder missing: {root} (unmounted or deleted?); paused"
        return MARKER_CREATE, None
    if marker is None:
        if seen_before:
            return MARKER_PAUSE, (f"folder marker missing: {marker_path}; paused "
                                  "(recreate it with the folder id to resume)")
        return MARKER_CREATE, None
    if marker.strip() != folder_id:
        return MARKER_PAUSE, f"folder marker {marker_path} names folder {marker.strip()!r}, not {folder_id!r}; paused"
    return MARKER_OK, None


#: The prefix of the pause reason of an encrypted folder whose key cannot be opened (a wrong
#: passphrase, ...): looked at again on every sync, cleared as soon as the key opens.
KEY_PAUSE_PREFIX = "encryption: "


def is_key_pause(reason: str | None) -> bool:
    return bool(reason) and reason.startswith(KEY_PAUSE_PREFIX)
