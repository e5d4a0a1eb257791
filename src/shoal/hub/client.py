"""The hub client: connecting to PostgreSQL and the hub's API as one device calls it.

Devices talk to PostgreSQL directly and only through the `shoal.*` functions of the hub
schema, so a least-privilege login can do exactly what syncing needs. Every psycopg
error is translated into a ShoalError here; a password never appears in a message.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import psycopg

from shoal.errors import HubLoginRefused, HubUnreachable, ShoalError
from shoal.hub.pgerrors import describe_error, is_outage, login_refused, translate
from shoal.hub.schema import ensure_schema
from shoal.model import Change, HeadVersion, HistoryEntry, PushStatus, RestoreStep

def connect(url: str, password: str | None = None, *, timeout: float = 10.0,
            autocommit: bool = True) -> psycopg.Connection:
    """Open a connection to the hub. Raises HubUnreachable (retryable) if it cannot."""
    kwargs: dict = {"connect_timeout": max(1, int(timeout)), "autocommit": autocommit,
                    "application_name": "shoal",
                    # Notice a dead network on TCP hubs (ignored on Unix sockets).
                    "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                    "keepalives_count": 3}
    if password is not None:
        kwargs["password"] = password
    try:
        return psycopg.connect(url, **kwargs)
    except psycopg.Error as e:
        if login_refused(e):
            raise HubLoginRefused(f"the hub refused this device's login: {describe_error(e)}") from e
        raise HubUnreachable(f"hub unreachable: {describe_error(e)}") from e


@dataclass(frozen=True)
class PushResult:
    seq: int
    status: PushStatus
    version: int | None
    head: HeadVersion | None  # the hub's head, when the status is CONFLICT


def _head_version(head: dict | None) -> HeadVersion | None:
    """The head a conflicting push row reports, from shoal.push's JSON."""
    if head is None:
        return None
    sealed = head.get("sealed")
    return HeadVersion(version=head["version"], device_id=head["device_id"], kind=head["kind"],
                       size=head["size"], mtime_ns=head["mtime_ns"], sha256=head["sha256"],
                       deleted=head["deleted"], target=head.get("target"),
                       device_name=head.get("device_name"), incarnation=head.get("incarnation"),
                       seq=head.get("seq"), sealed=base64.b64decode(sealed) if sealed else None)


@dataclass(frozen=True)
class ContentInfo:
    sha256: str
    size: int
    block_size: int
    blocks: list[str]


class _CallWatchdog:
    """Cuts the socket under a hub call that runs past its deadline.

    A stalled network (or proxy) can leave a query waiting forever: TCP keepalives do not
    help when something in between still acknowledges. Shutting the socket down makes the
    blocked call fail at once with a connection error, which is retried like any outage.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.deadlines: dict[int, tuple[float, psycopg.Connection]] = {}
        self.thread: threading.Thread | None = None

    def arm(self, conn: psycopg.Connection, seconds: float) -> None:
        with self.lock:
            self.deadlines[id(conn)] = (time.monotonic() + seconds, conn)
            if self.thread is None:
                self.thread = threading.Thread(target=self._loop, name="shoal-hub-watchdog", daemon=True)
                self.thread.start()

    def disarm(self, conn: psycopg.Connection) -> None:
        with self.lock:
            self.deadlines.pop(id(conn), None)

    def _loop(self) -> None:
        while True:
            time.sleep(0.25)
            now = time.monotonic()
            with self.lock:
                late = [c for key, (d, c) in list(self.deadlines.items()) if d < now]
                for c in late:
                    self.deadlines.pop(id(c), None)
            for c in late:
                try:
                    s = socket.socket(fileno=os.dup(c.fileno()))
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except (OSError, psycopg.Error):
                    pass


_watchdog = _CallWatchdog()
DEFAULT_CALL_TIMEOUT = 120.0


class Hub:
    """The hub API as one device sees it. Methods raise HubUnreachable or HubError.

    Every call must finish within `call_timeout` seconds, or its connection is cut and the
    call raises HubUnreachable.
    """

    def __init__(self, conn: psycopg.Connection, device_id: str, incarnation_id: str,
                 call_timeout: float = DEFAULT_CALL_TIMEOUT):
        self.conn = conn
        self.device_id = device_id
        self.incarnation_id = incarnation_id
        self.call_timeout = call_timeout
        self._acks: dict[str, int] = {}  # folder -> cursor: sent with the next sync log line
        self._keys: dict[str, tuple[str | None, bool]] = {}  # folder -> its folder_key, read by register

    def close(self) -> None:
        try:
            if self._acks and not (self.conn.closed or self.conn.broken):
                self._send_acks()
        except ShoalError:
            pass  # the hub only keeps less history than it could: it learns the cursor next time
        try:
            self.conn.close()
        except psycopg.Error:
            pass

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        started = time.monotonic()
        _watchdog.arm(self.conn, self.call_timeout)
        try:
            yield
        except psycopg.Error as e:
            if is_outage(e) and time.monotonic() - started >= self.call_timeout:
                raise HubUnreachable(
                    f"hub unreachable: no answer to {what} within {self.call_timeout:g}s") from e
            raise translate(e, what) from e
        finally:
            _watchdog.disarm(self.conn)

    def _rows(self, what: str, query: str, args: Sequence, *, binary: bool = False) -> list[tuple]:
        with self._errors(what):
            return self.conn.execute(query, args, binary=binary).fetchall()

    def _pipeline(self, what: str, statements: Sequence[tuple[str, Sequence]]) -> list[list[tuple]]:
        """Several statements in one round trip (libpq's pipeline mode; one after the other where
        the client library cannot); each statement's rows."""
        with self._errors(what):
            if not psycopg.Pipeline.is_supported():
                return [self.conn.execute(q, a).fetchall() for q, a in statements]
            with self.conn.pipeline():
                cursors = [self.conn.execute(q, a) for q, a in statements]
            return [c.fetchall() for c in cursors]

    def register(self, name: str, key_folders: Sequence[str] = ()) -> str:
        """Register (or rename) this device; returns the hub id. The keys of `key_folders` come in
        the same round trip, for the next `folder_key` of each."""
        got = self._pipeline("register", [("SELECT shoal.register_device(%s, %s)", (self.device_id, name)),
                                          *(("SELECT sealed_key, has_history FROM shoal.folder_key(%s, %s)",
                                             (self.device_id, fid)) for fid in key_folders)])
        for fid, rows in zip(key_folders, got[1:]):
            self._keys[fid] = (rows[0][0], bool(rows[0][1]))
        return got[0][0][0]

    def listen_channel(self) -> str:
        """The notification channel of this device's space (named by a hub secret: another
        space can neither listen to it nor send on it)."""
        return self._rows("listen", "SELECT shoal.listen_channel(%s)", (self.device_id,))[0][0]

    def hub_id(self) -> str:
        return self._rows("hub id", "SELECT shoal.hub_id()", ())[0][0]

    _PUSH_COLUMNS = ("seq", "path", "kind", "size", "mtime_ns", "sha256", "target", "deleted", "base",
                     "moved_from", "conflict_of", "sealed")
    _PUSH = ("SELECT seq, status, version, head FROM shoal.push(%s, %s, %s, %b::bigint[], %b::text[], %b::text[],"
             " %b::bigint[], %b::bigint[], %b::text[], %b::text[], %b::boolean[], %b::bigint[], %b::text[], %b::text[],"
             " %b::bytea[])")

    def push(self, folder_id: str, rows: list[dict]) -> list[PushResult]:
        """Push changelog rows of one folder in one transaction (see shoal.push in the schema):
        one binary array per column, so the server parses no text per row. A row's `sealed` is
        the sealed payload (bytes) of a row of an encrypted folder."""
        columns = [[r.get(c) for r in rows] for c in self._PUSH_COLUMNS]
        got = self._rows("push", self._PUSH, (self.device_id, self.incarnation_id, folder_id, *columns))
        return [PushResult(s, PushStatus(st), v, _head_version(h)) for s, st, v, h in got]

    _PULL = ("SELECT id, path, device_id::text, device_name, kind, size, mtime_ns, sha256, target,"
             " deleted, moved_from, conflict_of, incarnation::text, seq, sealed FROM shoal.pull(%s, %s, %s, %s, %s)")

    def pull(self, folder_id: str, after: int, limit: int = 1000, *, stub_own: bool = False) -> list[Change]:
        """A page of changes after `after`; with `stub_own`, this device's own rows come as stubs
        (version, device, incarnation, seq: no path, hash or payload), for a caller that skips them."""
        return self._changes(folder_id, self._rows("pull", self._PULL,
                                                   (self.device_id, folder_id, after, limit, stub_own)))

    def horizon_and_pull(self, folder_id: str, after: int, limit: int = 1000, *,
                         stub_own: bool = False) -> tuple[int, list[Change]]:
        """The last change id the hub's garbage collection removed from the folder (0: none) and
        the first pull page after `after`, in one round trip."""
        horizon, got = self._pipeline("pull", [
            ("SELECT shoal.folder_horizon(%s, %s)", (self.device_id, folder_id)),
            (self._PULL, (self.device_id, folder_id, after, limit, stub_own))])
        return horizon[0][0], self._changes(folder_id, got)

    @staticmethod
    def _changes(folder_id: str, got: list[tuple]) -> list[Change]:
        return [
            Change(folder_id, path, kind, size, mtime_ns, sha, bool(deleted), target, version=vid,
                   device_id=dev, device_name=name, moved_from=mv, conflict_of=co, seq=seq,
                   incarnation=inc, sealed=_bytes(sealed))
            for vid, path, dev, name, kind, size, mtime_ns, sha, target, deleted, mv, co, inc, seq, sealed in got
        ]

    _HISTORY_COLUMNS = ("id, path, device_id::text, device_name, created_at, kind, size, mtime_ns, sha256, target,"
                        " deleted, moved_from, conflict_of, incarnation::text, seq, sealed")

    def history(self, folder_id: str, path: str | None, limit: int = 100,
                before: int | None = None) -> list[HistoryEntry]:
        """The versions of `path` (None: the latest changes of the folder), newest first."""
        got = self._rows("history", f"SELECT {self._HISTORY_COLUMNS} FROM shoal.history(%s, %s, %s, %s, %s)",
                         (self.device_id, folder_id, path, limit, before))
        return [_entry(folder_id, r) for r in got]

    def restore_plan(self, folder_id: str, mode: str, when: datetime, device_name: str | None = None
                     ) -> list[RestoreStep]:
        """See shoal.restore_plan: mode "at" (the folder at `when`) or "revert" (undo what
        `device_name` pushed since `when`)."""
        got = self._rows(
            "restore plan", "SELECT path, head_version, head_deleted, later, id, path, device_id::text, device_name,"
            " created_at, kind, size, mtime_ns, sha256, target, deleted, NULL, NULL, incarnation::text, seq, sealed"
            " FROM shoal.restore_plan(%s, %s, %s, %s, %s)", (self.device_id, folder_id, mode, when, device_name))
        return [RestoreStep(r[0], r[1], bool(r[2]), _entry(folder_id, r[4:]) if r[4] is not None else None,
                            bool(r[3])) for r in got]

    def ack_pull(self, folder_id: str, cursor: int) -> None:
        """Tell the hub how far this device has pulled (what its garbage collection must keep):
        sent with the next sync log line, or when the connection closes (one round trip less)."""
        self._acks[folder_id] = cursor

    def _ack_statements(self) -> list[tuple[str, Sequence]]:
        acks, self._acks = self._acks, {}
        return [("SELECT shoal.ack_pull(%s, %s, %s)", (self.device_id, fid, cursor)) for fid, cursor in acks.items()]

    def _send_acks(self) -> None:
        self._pipeline("ack", self._ack_statements())

    def heads(self, folder_id: str) -> list[Change]:
        got = self._rows(
            "heads", "SELECT path, version, kind, size, mtime_ns, sha256, target, deleted, device_id::text,"
            " incarnation::text, seq, sealed FROM shoal.heads_of(%s, %s)", (self.device_id, folder_id))
        return [Change(folder_id, p, k, s, m, h, bool(d), t, version=v, device_id=dev, incarnation=inc, seq=seq,
                       sealed=_bytes(sealed))
                for p, v, k, s, m, h, t, d, dev, inc, seq, sealed in got]

    def heads_at(self, folder_id: str, paths: Sequence[str]) -> list[Change]:
        got = self._rows(
            "heads", "SELECT path, version, device_id::text, device_name, kind, size, mtime_ns, sha256,"
            " target, deleted, incarnation::text, seq, sealed FROM shoal.heads_at(%s, %s, %s)",
            (self.device_id, folder_id, list(paths)))
        return [Change(folder_id, p, k, s, m, h, bool(d), t, version=v, device_id=dev, device_name=name,
                       incarnation=inc, seq=seq, sealed=_bytes(sealed))
                for p, v, dev, name, k, s, m, h, t, d, inc, seq, sealed in got]

    # How contents are named and stored: a block is named by its SHA-256 and stored as it is.
    # (A SealedFolderHub seals blocks instead; the transfer code asks whichever it is given.)

    def seal_block(self, data: bytes) -> tuple[str, bytes]:
        """(hub name, bytes to store) of a block."""
        return hashlib.sha256(data).hexdigest(), data

    def open_block(self, name: str, stored: bytes) -> bytes | None:
        """The block's plaintext, or None if the stored bytes fail their check."""
        return stored if hashlib.sha256(stored).hexdigest() == name else None

    def stored_size(self, size: int) -> int:
        """The bytes a content of `size` bytes takes on the hub (what get_contents reports)."""
        return size

    def folder_key(self, folder_id: str) -> tuple[str | None, bool]:
        """The folder's wrapped key (None: not encrypted) and whether it has history on the hub
        (as `register` read it just before, once; else asked now)."""
        if folder_id in self._keys:
            return self._keys.pop(folder_id)
        key, history = self._rows("folder key", "SELECT sealed_key, has_history FROM shoal.folder_key(%s, %s)",
                                  (self.device_id, folder_id))[0]
        return key, bool(history)

    def set_folder_key(self, folder_id: str, wrapped: str, old: str | None) -> bool:
        """Set (old None) or re-wrap the folder's key; False if another device changed it first."""
        return bool(self._rows("folder key", "SELECT shoal.set_folder_key(%s, %s, %s, %s)",
                               (self.device_id, folder_id, wrapped, old))[0][0])

    def put_sealed_small(self, items: Sequence[tuple[str, str, bytes]], block_size: int) -> int:
        """Store one-block contents of an encrypted folder: (content id, block name, sealed block)."""
        return self._rows("small content upload",
                          "SELECT shoal.put_sealed_small(%s, %b::text[], %b::text[], %b, %s)",
                          (self.device_id, [i for i, _, _ in items], [n for _, n, _ in items],
                           [d for _, _, d in items], block_size))[0][0]

    def put_sealed_content(self, content_id: str, block_size: int, blocks: list[str]) -> None:
        self._rows("content upload", "SELECT shoal.put_sealed_content(%s, %s, %s, %s)",
                   (self.device_id, content_id, block_size, blocks))

    def missing_contents(self, shas: Sequence[str]) -> set[str]:
        if not shas:
            return set()
        return {r[0] for r in self._rows("content check", "SELECT shoal.missing_contents(%s, %b::text[])", (self.device_id, list(shas)))}

    def missing_blocks(self, shas: Sequence[str]) -> set[str]:
        if not shas:
            return set()
        return {r[0] for r in self._rows("block check", "SELECT shoal.missing_blocks(%s, %b::text[])", (self.device_id, list(shas)))}

    # Block bytes go as binary parameters (%b): as text, each block is hex-encoded here, twice its
    # size on the wire, and parsed again by the server (a 4x slower upload). Lists of hashes go
    # binary too: psycopg quotes each element of a text array with a regex (~4 us a hash).

    def put_blocks(self, blocks: Sequence[tuple[str, bytes]]) -> int:
        if not blocks:
            return 0
        return self._rows("block upload", "SELECT shoal.put_blocks(%s, %b::text[], %b)",
                          (self.device_id, [b[0] for b in blocks], [b[1] for b in blocks]))[0][0]

    def put_small_contents(self, items: Sequence[tuple[str, bytes]], block_size: int) -> int:
        """Store one-block contents (the block is the whole file) in one round trip."""
        return self._rows("small content upload",
                          "SELECT shoal.put_small_contents(%s, %b::text[], %b, %s)",
                          (self.device_id, [s for s, _ in items], [d for _, d in items], block_size))[0][0]

    def put_content(self, sha256: str, size: int, block_size: int, blocks: list[str]) -> None:
        self._rows("content upload", "SELECT shoal.put_content(%s, %s, %s, %s, %b::text[])",
                   (self.device_id, sha256, size, block_size, blocks))

    def get_contents(self, shas: Sequence[str]) -> dict[str, ContentInfo]:
        if not shas:
            return {}
        got = self._rows("content lookup", "SELECT sha256, size, block_size, blocks FROM shoal.get_contents(%s, %b::text[])",
                         (self.device_id, list(shas)))
        return {s: ContentInfo(s, size, bs, list(bl)) for s, size, bs, bl in got}

    def get_blocks(self, shas: Sequence[str]) -> dict[str, bytes]:
        if not shas:
            return {}
        # Binary results: bytea in text format would double the bytes on the wire.
        got = self._rows("block download", "SELECT sha256, data FROM shoal.get_blocks(%s, %b::text[])",
                         (self.device_id, list(shas)),
                         binary=True)
        return {s: bytes(d) for s, d in got}

    def log_sync(self, folder_id: str | None, result: str, pushed: int, pulled: int,
                 started: float, error: str | None) -> None:
        ms = int((time.monotonic() - started) * 1000)
        self._pipeline("sync log", [*self._ack_statements(), ("SELECT shoal.log_sync(%s, %s, %s, %s, %s, %s, %s)",
                                                               (self.device_id, folder_id, result, pushed, pulled,
                                                                ms, error))])

    def devices(self) -> list[dict]:
        got = self._rows("devices", "SELECT device_id::text, name, last_push_at, last_pull_at, behind,"
                         " last_error FROM shoal.device_overview(%s)", (self.device_id,))
        keys = ("device_id", "name", "last_push_at", "last_pull_at", "behind", "last_error")
        return [dict(zip(keys, r)) for r in got]

    def usage(self) -> dict:
        """This device's space: changes and bytes stored, and its quota (None: unlimited)."""
        got = self._rows("usage", "SELECT space, changes, bytes, max_changes, max_bytes"
                         " FROM shoal.space_usage_of(%s)", (self.device_id,))[0]
        return dict(zip(("space", "changes", "bytes", "max_changes", "max_bytes"), got))

    def dupes(self) -> list[dict]:
        got = self._rows("dupes", "SELECT sha256, size, places FROM shoal.duplicate_contents(%s)",
                         (self.device_id,))
        return [{"sha256": s, "size": size, "places": list(p)} for s, size, p in got]


def _entry(folder_id: str, r: Sequence) -> HistoryEntry:
    vid, path, dev, name, when, kind, size, mtime_ns, sha, target, deleted, mv, co, inc, seq, sealed = r
    return HistoryEntry(Change(folder_id, path, kind, size, mtime_ns, sha, bool(deleted), target, seq=seq,
                               version=vid, device_id=dev, device_name=name, moved_from=mv, conflict_of=co,
                               incarnation=inc, sealed=_bytes(sealed)), when)


def _bytes(value) -> bytes | None:
    return None if value is None else bytes(value)


def resolve_hub_url(hub_url: str, state_dir) -> str:
    """The conninfo of the configured hub; `embedded` starts the state dir's own server."""
    if hub_url == "embedded":
        from shoal.hub.embedded import start_embedded_hub

        return start_embedded_hub(state_dir)
    return hub_url


def open_hub(url: str, password: str | None, device_id: str, incarnation_id: str, *,
             init_if_missing: bool = True, call_timeout: float | None = None) -> Hub:
    """Connect and make sure the hub schema is there and not newer than this shoal.

    A hub without the schema is initialised when the role may (the owner's role, the
    embedded hub); otherwise HubError says to run `shoal hub init`.
    """
    conn = connect(url, password)
    try:
        ensure_schema(conn, may_init=init_if_missing)
    except BaseException:
        conn.close()
        raise
    return Hub(conn, device_id, incarnation_id, call_timeout=call_timeout or DEFAULT_CALL_TIMEOUT)
