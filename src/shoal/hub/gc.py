"""Retention and garbage collection of the hub (`shoal hub gc`, and daily by the daemon that owns
an embedded hub) and the hub's statistics (`shoal hub stats`); both run as the hub's owner.

The SQL lives in `sql/api/gc.sql`; this module drives it, one bounded batch per transaction,
in the order that keeps the hub consistent whenever it stops:

1. per folder: the versions superseded before the cut-off (`keep`), and deleted heads older than
   it, except what an active device has not pulled yet, under the folder's row lock (as a push
   takes it); the folder's `gc_horizon` records how far its changelog was cut;
2. per space: the contents no change references (waiting out pushes in flight);
3. per space: the blocks no content of the space lists; then, once every transaction that was
   open has ended, any block a content still lists is given back to its space (a content
   declared meanwhile);
4. the blocks no space has any more (waiting out uploads in flight).

Contents and blocks younger than `grace` are never collected: they may belong to a push that
has not committed yet. A lock that cannot be had within 5 s (a device holding a transaction
open) skips that folder or step; what it would have collected is left for the next run.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import psycopg

from shoal.errors import HubError
from shoal.hub.pgerrors import translate

log = logging.getLogger("shoal.hub.gc")

DEFAULT_KEEP = 30 * 86400.0
DEFAULT_GRACE = 3600.0
GC_LOCK = 0x73686F616C_6763  # advisory lock key: one `shoal hub gc` at a time per hub ("shoal" "gc")
CHANGES_BATCH = 20_000
CONTENTS_BATCH = 5_000
BLOCK_SPACES_BATCH = 20_000
BLOCKS_BATCH = 5_000
BLOCKS_BATCH_BYTES = 64 << 20
WAIT_TIMEOUT = 60.0


@dataclass
class FolderGc:
    space: str
    folder: str
    changes: int = 0
    tombstones: int = 0
    held_after: int | None = None  # an active device has not pulled the changes after this id
    skipped: str | None = None


@dataclass
class GcReport:
    """What a run removed (with dry_run: would remove). `bytes`: of blocks deleted from the hub;
    `space_bytes`: what the spaces' usage counters dropped by."""

    dry_run: bool
    keep_seconds: float
    grace_seconds: float
    changes: int = 0
    tombstones: int = 0
    contents: int = 0
    block_refs: int = 0
    blocks: int = 0
    bytes: int = 0
    space_bytes: int = 0
    repaired: int = 0
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds per step
    folders: list[FolderGc] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line for a log or a terminal."""
        from shoal.progress import human_bytes

        verb = "would free" if self.dry_run else "freed"
        line = (f"{verb} {self.changes} changes ({self.tombstones} deleted files), {self.contents} contents, "
                f"{self.blocks} blocks, {human_bytes(self.bytes)} in {self.seconds:.1f} s")
        if self.skipped:
            line += f"; skipped: {'; '.join(self.skipped)}"
        return line


def _one(conn: psycopg.Connection, query: str, params: tuple = ()) -> tuple:
    return conn.execute(query, params).fetchone()


def collect_garbage(conn: psycopg.Connection, *, keep: float = DEFAULT_KEEP, grace: float = DEFAULT_GRACE,
                    dry_run: bool = False, should_stop: Callable[[], bool] | None = None,
                    wait_timeout: float = WAIT_TIMEOUT) -> GcReport:
    """Collect the hub's garbage as its owner (see the module docstring); returns what went.

    `conn` is the owner's connection (set to autocommit here: every batch is its own
    transaction). `should_stop` is asked between batches: a run stopped early is consistent.
    Raises HubError if the hub has no GC functions (run `shoal hub init`), another run holds
    the hub or the hub refuses, HubUnreachable if the connection fails."""
    if keep < 0 or grace < 0:
        raise ValueError("keep and grace are >= 0")
    stop = should_stop or (lambda: False)
    conn.autocommit = True
    started = time.monotonic()
    report = GcReport(dry_run, keep, grace)
    try:
        if not _one(conn, "SELECT to_regprocedure('shoal.gc_begin()') IS NOT NULL")[0]:
            raise HubError("this hub has no garbage collection yet: run `shoal hub init` (as its owner) first")
        try:  # a run killed mid-statement: its session notices within a second, ends, frees the hub
            conn.execute("SET client_connection_check_interval = '1s'")
        except psycopg.Error:
            pass  # before PostgreSQL 14, or a platform without it: the session ends with its statement
        if not _one(conn, "SELECT pg_try_advisory_lock(%s)", (GC_LOCK,))[0]:
            raise HubError("another `shoal hub gc` is running on this hub")
        try:
            _run(conn, report, keep, grace, dry_run, stop, wait_timeout)
        finally:
            try:
                conn.execute("SELECT pg_advisory_unlock(%s)", (GC_LOCK,))
            except psycopg.Error:
                pass  # the connection broke: the session's lock went with it
    except psycopg.Error as e:
        raise translate(e, "garbage collection") from e
    report.seconds = time.monotonic() - started
    return report


def _run(conn, report: GcReport, keep: float, grace: float, dry: bool, stop, wait_timeout: float) -> None:
    started = [time.monotonic()]

    def phase(name: str) -> None:
        now = time.monotonic()
        report.phases[name] = round(now - started[0], 3)
        log.debug("gc: %s took %.1f s", name, now - started[0])
        started[0] = now

    cutoff, before = _one(conn, "SELECT now() - make_interval(secs => %s), now() - make_interval(secs => %s)",
                          (keep, grace))
    conn.execute("SELECT shoal.gc_begin()")
    spaces = [r[0] for r in conn.execute("SELECT shoal.gc_spaces()").fetchall()]
    for space in spaces:
        for (folder,) in conn.execute("SELECT shoal.gc_folders(%s)", (space,)).fetchall():
            if stop():
                return
            report.folders.append(_collect_folder(conn, space, folder, cutoff, dry))
            report.changes += report.folders[-1].changes
            report.tombstones += report.folders[-1].tombstones
            if report.folders[-1].skipped:
                report.skipped.append(f"folder {space}/{folder}: {report.folders[-1].skipped}")
    phase("changes")
    for space in spaces:
        planned = _one(conn, "SELECT shoal.gc_plan_contents(%s, %s, %s)", (space, before, dry))[0]
        if dry:
            report.contents += planned
            continue
        for after in range(0, planned, CONTENTS_BATCH):
            if stop():
                return
            try:
                report.contents += _one(conn, "SELECT shoal.gc_contents(%s, %s, %s)",
                                        (space, after, CONTENTS_BATCH))[0]
            except psycopg.errors.LockNotAvailable:
                report.skipped.append(f"contents of space {space}: pushes kept the folders locked")
                break
    phase("contents")
    for space in spaces:
        if stop():
            return
        planned, nbytes = _one(conn, "SELECT * FROM shoal.gc_plan_block_spaces(%s, %s, %s)", (space, before, dry))
        if dry:
            report.block_refs += planned
            report.space_bytes += nbytes
            continue
        for after in range(0, planned, BLOCK_SPACES_BATCH):
            if stop():
                return
            deleted, nbytes = _one(conn, "SELECT * FROM shoal.gc_block_spaces(%s, %s, %s)",
                                   (space, after, BLOCK_SPACES_BATCH))
            report.block_refs += deleted
            report.space_bytes += nbytes
    phase("block_refs")
    if not dry:
        # A content declared while this run took its blocks out of the space is mended once the
        # transactions open now have ended (a run killed before this point: by the next run).
        settled = not report.block_refs or _wait_for_open_transactions(conn, wait_timeout, stop)
        phase("wait")
        for space in spaces:
            added, nbytes = _one(conn, "SELECT * FROM shoal.gc_repair_block_spaces(%s)", (space,))
            report.repaired += added
            report.space_bytes -= nbytes
        phase("repair")
        if not settled:
            report.skipped.append("blocks: transactions open since their blocks left a space did not end "
                                  f"within {wait_timeout:.0f} s")
            return
    if stop():
        return
    planned, nbytes, last_n = _one(conn, "SELECT * FROM shoal.gc_plan_orphans()")
    if dry:
        report.blocks, report.bytes = planned, nbytes
        phase("blocks")
        return
    after = 0
    while after < last_n and not stop():
        try:
            deleted, nbytes, last = _one(conn, "SELECT * FROM shoal.gc_orphan_blocks(%s, %s, %s)",
                                         (after, BLOCKS_BATCH, BLOCKS_BATCH_BYTES))
        except psycopg.errors.LockNotAvailable:
            report.skipped.append("blocks: uploads kept the blocks locked")
            break
        report.blocks += deleted
        report.bytes += nbytes
        after = last
    phase("blocks")


def _collect_folder(conn, space: str, folder: str, cutoff: dt.datetime, dry: bool) -> FolderGc:
    result = FolderGc(space, folder)
    superseded, tombstones, result.held_after = _one(
        conn, "SELECT * FROM shoal.gc_plan_folder(%s, %s, %s, %s)", (space, folder, cutoff, dry))
    if dry:
        result.changes, result.tombstones = superseded + tombstones, tombstones
        return result
    after = 0
    while True:
        try:
            changes, heads, last = _one(conn, "SELECT * FROM shoal.gc_collect_changes(%s, %s, %s, %s)",
                                        (space, folder, after, CHANGES_BATCH))
        except psycopg.errors.LockNotAvailable:
            result.skipped = "its lock was held by a push for too long"
            return result
        result.changes += changes
        result.tombstones += heads
        if last is None:
            return result
        after = last


def _wait_for_open_transactions(conn, timeout: float, stop) -> bool:
    """Wait until every transaction of the hub's database open now has ended; False if some
    is still open after `timeout` seconds (or the run is stopping)."""
    open_now = _one(conn, "SELECT shoal.gc_open_transactions()")[0]
    deadline = time.monotonic() + timeout
    delay = 0.01
    while open_now:
        if _one(conn, "SELECT shoal.gc_still_open(%s)", (open_now,))[0] == 0:
            return True
        if time.monotonic() >= deadline or stop():
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    return True


def hub_stats(conn: psycopg.Connection) -> dict:
    """Per space and folder: files (live heads), versions (changes), deleted heads, contents,
    blocks, bytes stored (blocks of the space) vs referenced (by live files), the oldest change
    kept; and the hub's blocks and bytes. Raises HubError / HubUnreachable."""
    conn.autocommit = True
    try:
        if not _one(conn, "SELECT to_regprocedure('shoal.stats_hub()') IS NOT NULL")[0]:
            raise HubError("this hub has no statistics yet: run `shoal hub init` (as its owner) first")
        spaces = []
        for (space,) in conn.execute("SELECT shoal.gc_spaces()").fetchall():
            row = conn.execute("SELECT * FROM shoal.stats_space(%s)", (space,))
            names = [c.name for c in row.description]
            entry = {"space": space, **dict(zip(names, row.fetchone()))}
            folders = conn.execute("SELECT * FROM shoal.stats_folders(%s)", (space,))
            names = [c.name for c in folders.description]
            entry["folders"] = [dict(zip(names, r)) for r in folders.fetchall()]
            for f in entry["folders"]:
                if f["oldest_change"] is not None:
                    f["oldest_change"] = f["oldest_change"].isoformat(timespec="seconds")
            spaces.append(entry)
        blocks, nbytes = _one(conn, "SELECT * FROM shoal.stats_hub()")
    except psycopg.Error as e:
        raise translate(e, "reading the hub's statistics") from e
    return {"hub": {"blocks": blocks, "bytes": nbytes}, "spaces": spaces}
