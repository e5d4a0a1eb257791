"""Deciding concurrent changes of one path: which version keeps the path, where the other goes.

Owns SPEC "Conflicts". With a central hub a change carries the version it was based on; when
that is not the hub's head for the path, the change and the head are concurrent and
`resolve_concurrent` says what happens. The decision depends only on the two versions and the
policy, never on which of them reached the hub first, so every device ends with the same files
(`final_files` states that outcome and the tests prove the order independence). No version is
lost: under keep-both the loser lives on in a conflict copy, under newest-wins in a trash
(`trashed_versions`).
"""

from __future__ import annotations

from dataclasses import dataclass

from shoal.core.conflicts import conflict_name
from shoal.model import ConflictPolicy, StrEnum


class Action(StrEnum):
    """What happens to a local change concurrent with the hub's head (see Resolution)."""

    SAME = "same"
    ADOPT_HEAD = "adopt-head"
    PUSH_OVER_HEAD = "push-over-head"


SAME = Action.SAME
ADOPT_HEAD = Action.ADOPT_HEAD
PUSH_OVER_HEAD = Action.PUSH_OVER_HEAD

KEEP_BOTH = ConflictPolicy.KEEP_BOTH
NEWEST_WINS = ConflictPolicy.NEWEST_WINS
POLICIES = tuple(ConflictPolicy)


@dataclass(frozen=True)
class Version:
    """One device's version of a path, as far as conflict resolution needs to know it."""

    path: str
    sha256: str
    deleted: bool
    mtime_ns: int
    device_id: str
    device_name: str


@dataclass(frozen=True)
class Resolution:
    """What to do with a local change that is concurrent with the hub's head.

    action: SAME (nothing to decide: same content, or both deleted), ADOPT_HEAD (the head keeps
    the path; the local device applies it) or PUSH_OVER_HEAD (the local version becomes the new
    head; devices holding the old head replace it).
    local_copy_to: rename the local version to this conflict path (it then syncs as a new file).
    head_copy_to: keep the head's content at this conflict path (written locally, then synced
    as a new file).
    trash_local: move the local file to the trash before adopting the head.
    """

    action: Action
    local_copy_to: str | None = None
    head_copy_to: str | None = None
    trash_local: bool = False


def _order_key(version: Version) -> tuple[int, str, str, bool]:
    # An edit sorts above a deletion with the very same stamp, so the order is total.
    return (version.mtime_ns, version.device_id, version.sha256, not version.deleted)


def newer(a: Version, b: Version) -> Version:
    """The version that wins under "newest": larger mtime_ns, then larger device_id, then
    larger sha256 (a total, deterministic order: newer(a, b) is newer(b, a)). Raises nothing.
    """
    return a if _order_key(a) >= _order_key(b) else b


def resolve_concurrent(local: Version, head: Version, policy: ConflictPolicy | str) -> Resolution:
    """Resolve the local version of a path against the hub's concurrent head.

    Same content (or both deleted): SAME. Edit against delete: the edit wins, whichever side
    it is on. Two different edits: the newer (see `newer`) keeps the path; under "keep-both"
    the other is kept as a conflict copy named after its own mtime and device, under
    "newest-wins" it goes to the trash.
    Raises ValueError for an unknown policy or two versions of different paths, and
    PathRefused if the path is too long to have a conflict copy beside it.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown conflict policy {policy!r}: expected one of {', '.join(POLICIES)}")
    policy = ConflictPolicy(policy)
    if local.path != head.path:
        raise ValueError(f"versions of different paths: {local.path!r} and {head.path!r}")
    if local.deleted and head.deleted:
        return Resolution(SAME)
    if not local.deleted and not head.deleted and local.sha256 == head.sha256:
        return Resolution(SAME)
    if local.deleted:
        return Resolution(ADOPT_HEAD)
    if head.deleted:
        return Resolution(PUSH_OVER_HEAD)
    local_wins = newer(local, head) is local
    if policy is KEEP_BOTH:
        if local_wins:
            return Resolution(
                PUSH_OVER_HEAD, head_copy_to=conflict_name(head.path, head.mtime_ns, head.device_name)
            )
        return Resolution(
            ADOPT_HEAD, local_copy_to=conflict_name(local.path, local.mtime_ns, local.device_name)
        )
    if local_wins:
        return Resolution(PUSH_OVER_HEAD)
    return Resolution(ADOPT_HEAD, trash_local=True)


def final_files(local: Version, head: Version, resolution: Resolution) -> dict[str, str]:
    """The live files (path -> sha256) once `resolution` has reached every device.

    Trashed versions are not live and are not included. Raises ValueError for an unknown action.
    """
    files: dict[str, str] = {}
    if resolution.action == SAME:
        if not local.deleted:
            files[local.path] = local.sha256
    elif resolution.action == ADOPT_HEAD:
        if not head.deleted:
            files[head.path] = head.sha256
    elif resolution.action == PUSH_OVER_HEAD:
        if not local.deleted:
            files[local.path] = local.sha256
    else:
        raise ValueError(f"unknown resolution action {resolution.action!r}")
    if resolution.local_copy_to is not None and not local.deleted:
        files[resolution.local_copy_to] = local.sha256
    if resolution.head_copy_to is not None and not head.deleted:
        files[resolution.head_copy_to] = head.sha256
    return files


def trashed_versions(local: Version, head: Version, resolution: Resolution) -> list[Version]:
    """The versions that survive only in a trash once `resolution` has reached every device.

    Under ADOPT_HEAD with `trash_local`, the local version; under PUSH_OVER_HEAD without a
    head copy, a live head that devices holding it replace (and so trash, SPEC "Sync
    semantics"). Raises nothing.
    """
    trashed = []
    if resolution.action == ADOPT_HEAD and resolution.trash_local and not local.deleted:
        trashed.append(local)
    if (
        resolution.action == PUSH_OVER_HEAD
        and resolution.head_copy_to is None
        and not head.deleted
        and head.sha256 != local.sha256
    ):
        trashed.append(head)
    return trashed
