"""Frozen dataclasses shared by every layer: what a file is, what a change is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

KIND_FILE = "file"
KIND_SYMLINK = "symlink"


class FileState(NamedTuple):
    """One indexed path of a folder, as the local store records it.

    `version` is the hub version this state was synced from or based on (None: never synced).
    `deleted` rows are tombstones: they remember the version a deletion was based on.
    For symlinks `target` is the link text and `sha256` the SHA-256 of that text.
    (A NamedTuple rather than a dataclass: a rescan builds one per indexed file.)
    """

    folder_id: str
    path: str
    kind: str
    size: int
    mtime_ns: int
    inode: int
    sha256: str
    deleted: bool = False
    target: str | None = None
    version: int | None = None


@dataclass(frozen=True)
class Change:
    """A change of one path: a local outbox row or a row pulled from the hub.

    `version` is the hub's id for the change (None until the hub accepted it).
    `moved_from` names the path the same content left in the same scan (a rename).
    `conflict_of` names the path whose concurrent version this conflict copy keeps.
    """

    folder_id: str
    path: str
    kind: str
    size: int
    mtime_ns: int
    sha256: str
    deleted: bool = False
    target: str | None = None
    seq: int | None = None
    version: int | None = None
    device_id: str | None = None
    device_name: str | None = None
    moved_from: str | None = None
    conflict_of: str | None = None
