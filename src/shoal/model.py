"""Frozen dataclasses and enums shared by every layer: what a file is, what a change is, and
the named states a folder, an outbox row or a per-path error can be in.

The enums are str-valued: a member compares equal to (and is stored in SQLite and sent to the
hub as) the same string as before, but a misspelt member is an AttributeError, not a branch
that is silently never taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import NamedTuple

try:
    from enum import StrEnum
except ImportError:  # Python 3.10
    class StrEnum(str, Enum):  # type: ignore[no-redef]
        """A str-valued enum whose str() and format() are its value (enum.StrEnum of 3.11)."""

        def __str__(self) -> str:
            return str.__str__(self)

        __format__ = str.__format__

KIND_FILE = "file"
KIND_EXEC = "exec"  # a regular file with its exec bit set (the only permission bit that syncs)
KIND_SYMLINK = "symlink"
KIND_DIR = "dir"  # a directory: synced by existence alone (size 0, the empty content's SHA-256)
EMPTY_SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # SHA-256 of no bytes
CONTENT_KINDS = frozenset({KIND_FILE, KIND_EXEC})  # kinds whose sha256 names a content to transfer


@dataclass(frozen=True)
class FsTraits:
    """What a folder's filesystem does, probed once per folder root (scan.fsprobe)."""

    folds_case: bool  # `a.txt` and `A.txt` are one file (exFAT, FAT, Android shared storage, macOS)
    modes: bool  # a file's exec bit is kept (not on exFAT/FAT, where every file looks executable)


class FolderMode(StrEnum):
    """What a folder exchanges with the hub (config `mode`)."""

    SEND_ONLY = "send-only"  # local changes go up; remote changes are never applied
    RECEIVE_ONLY = "receive-only"  # remote changes are applied; local changes stay local
    SEND_RECEIVE = "send-receive"

    @property
    def pushes(self) -> bool:
        """Whether local changes of the folder are pushed to the hub."""
        return self is not FolderMode.RECEIVE_ONLY

    @property
    def applies(self) -> bool:
        """Whether changes from other devices are applied to the folder."""
        return self is not FolderMode.SEND_ONLY


class ConflictPolicy(StrEnum):
    """Where the losing version of a conflict goes (config `sync.conflict`, SPEC "Conflicts")."""

    KEEP_BOTH = "keep-both"  # a conflict copy beside the path
    NEWEST_WINS = "newest-wins"  # the trash


class OutboxState(StrEnum):
    """The state of a local changelog row (the `outbox.state` column)."""

    PENDING = "pending"  # waiting to be pushed
    PUSHED = "pushed"  # the hub committed it (or already had the same content)
    SUPERSEDED = "superseded"  # a later row of the same path replaced it before it was pushed
    CONFLICT = "conflict"  # the hub's concurrent head won; this row is never pushed
    LOCAL = "local"  # a change of a receive-only folder: it stays on this device
    REFUSED = "refused"  # the hub refuses its values; set aside until the file changes


class ErrorKind(StrEnum):
    """The kind of a per-path error (the `errors.kind` column)."""

    READ = "read"  # the scanner could not read a local file: retried by the next scan
    WRITE = "write"  # a remote change could not be written: retried from the head
    BLOCK = "block"  # a content could not be fetched or verified: retried from the head
    REFUSED = "refused"  # the path or its data can never be written or pushed: reported only

    @property
    def retried_from_head(self) -> bool:
        """Whether the pull retries the path from the hub's head when its time comes."""
        return self in (ErrorKind.WRITE, ErrorKind.BLOCK)


class PushStatus(StrEnum):
    """The hub's answer for one pushed row (shoal.push)."""

    ACCEPTED = "accepted"  # a new head
    SAME = "same"  # the head already has this content
    CONFLICT = "conflict"  # the head is a version the device had not seen


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
    A row pulled from the hub also carries its (device, `incarnation`, `seq`) key and, in an
    encrypted folder, its `sealed` payload (the other fields then hold the hub's opaque values
    until the payload is opened).
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
    incarnation: str | None = None
    sealed: bytes | None = None


@dataclass(frozen=True)
class HeadVersion:
    """The hub's head of a path, as a push that conflicted with it reports it."""

    version: int
    device_id: str
    kind: str
    size: int
    mtime_ns: int
    sha256: str
    deleted: bool
    target: str | None = None
    device_name: str | None = None
    incarnation: str | None = None
    seq: int | None = None
    sealed: bytes | None = None

    @property
    def shown_name(self) -> str:
        """The name of the device that wrote the head (its id's start when it has none)."""
        return self.device_name or self.device_id[:8]

    def as_change(self, folder_id: str, path: str) -> Change:
        """The head as a change of `path` (what the device applies when the head wins)."""
        return Change(folder_id, path, self.kind, self.size, self.mtime_ns, self.sha256, self.deleted,
                      self.target, version=self.version, device_id=self.device_id,
                      device_name=self.shown_name)


@dataclass(frozen=True)
class HistoryEntry:
    """One version the hub keeps of a path: the change (its `version` is the hub's id) and when
    the hub took it."""

    change: Change
    time: datetime


@dataclass(frozen=True)
class RestoreStep:
    """What brings one path back (`shoal restore --at`, `shoal revert`): the head it replaces
    (the base of the new change) and the version to restore; `target` None: the path did not
    exist then, so it goes. `later`: another device changed the path after the reverted device
    (reported, left alone)."""

    path: str
    head_version: int
    head_deleted: bool
    target: HistoryEntry | None
    later: bool = False
