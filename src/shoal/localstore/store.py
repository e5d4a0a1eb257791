"""Store: the API over the device's SQLite database. Returns model objects, hides SQL."""

from __future__ import annotations

import contextlib
import os
import stat
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import apsw

from shoal.errors import StoreCorrupt, StoreError
from shoal.localstore.migrate import apply_migrations, available_migrations, current_version
from shoal.model import Change, ErrorKind, FileState, FsTraits, OutboxState

STORE_FILENAME = "shoal.db"
APPLICATION_ID = 0x53484F4C  # "SHOL": marks the file as a shoal store

_FILE_COLS = "folder_id, path, kind, size, mtime_ns, inode, sha256, deleted, target, version"
_OUTBOX_COLS = (
    "folder_id, path, kind, size, mtime_ns, sha256, deleted, target, seq, version, moved_from, conflict_of"
)


# Outbox states in SQL are literals, not parameters: SQLite uses the partial index
# outbox_pending only for a literal `state = 'pending'`.
_PENDING = f"state='{OutboxState.PENDING.value}'"
#: next_retry of an error that no timer retries (the path waits for a change): the column is
#: NOT NULL, PathError reads it back as None.
_NO_RETRY = 2**63 - 1


def _file(row) -> FileState:
    return FileState._make(row)  # `deleted` stays 0/1: as good as a bool, and a rescan makes 100k


def _change(row) -> Change:
    f, p, k, s, m, h, d, t, seq, v, mv, co = row
    return Change(f, p, k, s, m, h, bool(d), t, seq=seq, version=v, moved_from=mv, conflict_of=co)


@dataclass(frozen=True)
class FolderRow:
    id: str
    path: str
    marker_seen: bool
    first_scan_at: int | None
    paused: str | None
    pull_cursor: int
    last_sync_at: int | None


@dataclass(frozen=True)
class PathError:
    folder_id: str
    path: str
    kind: ErrorKind
    message: str
    retries: int
    next_retry: int | None  # epoch seconds; None: no timer retries it (it waits for a change)

    @classmethod
    def from_row(cls, row) -> PathError:
        folder_id, path, kind, message, retries, next_retry = row
        return cls(folder_id, path, ErrorKind(kind), message, retries,
                   None if next_retry == _NO_RETRY else next_retry)


def open_store(state_dir: Path, *, create: bool = True) -> Store:
    """Open (and create or migrate) the store in `state_dir`; with `create`, also take group
    and other permissions off the state dir and the store's files (tighten_state_dir).

    Raises StoreCorrupt if the file there is not a shoal store or fails its integrity check,
    StoreError if it cannot be opened at all (or does not exist and `create` is false).
    """
    state_dir = Path(state_dir)
    path = state_dir / STORE_FILENAME
    if not create and not path.exists():
        raise StoreError(f"no store at {path} (run `shoal init` or `shoal scan` first)")
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise StoreError(f"cannot create state dir {state_dir}: {e.strerror}") from e
    if create and not path.exists():
        # Made 0600 before SQLite opens it: SQLite gives the -wal and -shm files the mode of
        # the database file, so the index is never readable by another local user.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600))
    if create:  # `create=False` is doctor's look, which repairs nothing
        tighten_state_dir(state_dir)
    return Store(path)


STATE_DIR_MODE = 0o700
STORE_FILE_MODE = 0o600


def store_files(state_dir: Path) -> list[Path]:
    """The store's files in `state_dir` (the database, its -wal and -shm). Raises nothing."""
    base = Path(state_dir) / STORE_FILENAME
    return [base, base.with_name(base.name + "-wal"), base.with_name(base.name + "-shm")]


def tighten_state_dir(state_dir: Path, *, dir_mode: int = STATE_DIR_MODE) -> None:
    """Take group and other permissions off the state dir (to `dir_mode`) and the store's
    files (to 0600), where they are looser; the index lists every file name of every folder.

    Called on every open and again after the embedded hub starts (its wheel widens the
    directories above its data dir when it runs the server as another system user). Files
    not owned by this user are left alone (chmod would fail; doctor reports them).
    Raises nothing.
    """
    if os.name != "posix":
        return
    for target, mode in [(Path(state_dir), dir_mode)] + [(f, STORE_FILE_MODE) for f in store_files(state_dir)]:
        try:
            info = os.lstat(target)
            if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid():
                continue
            if stat.S_IMODE(info.st_mode) & ~mode & 0o7777:
                os.chmod(target, stat.S_IMODE(info.st_mode) & mode)
        except OSError:
            continue


def resync_meta(folder_id: str) -> str:
    """The meta key holding when a folder was last resynced from the hub's heads (epoch s): the
    device was away longer than the hub keeps history (`shoal status` says so)."""
    return f"resynced:{folder_id}"


def folder_key_meta(folder_id: str) -> str:
    """The meta key holding the fingerprint of an encrypted folder's key (SealedFolderHub)."""
    return f"folder_key:{folder_id}"


def _under(folder_id: str, under: str, recursive: bool) -> tuple[str, tuple]:
    """WHERE clause and arguments for a folder's index rows, or those of its directory `under`
    (only that directory's own rows when not `recursive`)."""
    where = "folder_id=?"
    args: tuple = (folder_id,)
    prefix = f"{under}/" if under else ""
    if prefix:  # a range on the primary key: '0' is the character after '/'
        where += " AND path >= ? AND path < ?"
        args += (prefix, f"{under}0")
    if not recursive:
        where += " AND instr(substr(path, ?), '/') = 0"
        args += (len(prefix) + 1,)
    return where, args


class FileKeys:
    """Store.file_keys: index rows as key tuples, read in order from one snapshot; `states`
    reads the full rows of a stretch of them from the same snapshot."""

    def __init__(self, path: Path, where: str, args: tuple):
        self._where, self._args = where, args
        self._conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
        self._conn.setbusytimeout(10_000)
        self._conn.execute("BEGIN")  # one read transaction: a consistent snapshot
        self.rows: Iterator[tuple] = self._conn.execute(
            f"SELECT path, kind, size, mtime_ns, inode, deleted FROM files WHERE {where} ORDER BY path", args)

    def states(self, first: str, last: str) -> list[FileState]:
        """The rows from path `first` to `last` (both included) of this snapshot, as FileStates."""
        return [_file(r) for r in self._conn.execute(
            f"SELECT {_FILE_COLS} FROM files WHERE {self._where} AND path >= ? AND path <= ? ORDER BY path",
            self._args + (first, last))]

    def close(self) -> None:
        self._conn.close()  # ends the read transaction

    def __enter__(self) -> FileKeys:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Store:
    """One open store. Thread-safe (APSW serialises access to a connection)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.checked_at_open = False  # whether opening ran the integrity check (see _check_existing)
        existed = self.path.exists() and self.path.stat().st_size > 0
        try:
            self.conn = apsw.Connection(str(self.path))
        except apsw.Error as e:
            raise StoreError(f"cannot open store {self.path}: {e}") from e
        self.conn.setbusytimeout(10_000)
        try:
            if existed:
                self._check_existing()
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self._migrate(existed)
        except (apsw.NotADBError, apsw.CorruptError) as e:
            self.conn.close()
            raise StoreCorrupt(
                f"{self.path} is not a healthy shoal store ({e}); it was left untouched: "
                "move it away to start a new index"
            ) from e
        except apsw.Error as e:  # e.g. a migration failed: its transaction was rolled back
            self.conn.close()
            raise StoreError(f"cannot open or migrate store {self.path}: {e}") from e
        except StoreError:
            self.conn.close()
            raise
        self._ensure_identity()

    # -- opening ----------------------------------------------------------------

    def _check_existing(self) -> None:
        appid = self.conn.execute("PRAGMA application_id").fetchone()[0]
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_schema WHERE type='table'")}
        if appid != APPLICATION_ID or "schema_migrations" not in tables:
            if appid == 0 and not tables:
                return  # an empty SQLite file: ours to initialise
            self.conn.close()
            raise StoreCorrupt(
                f"{self.path} is not a shoal store (a foreign SQLite database); it was left untouched"
            )
        if self._stamp_file().exists() and self._stamp_file().read_text() == self._stamp():
            return  # as the last shoal process that closed it left it
        self.checked_at_open = True
        result = self.conn.execute("PRAGMA quick_check").fetchall()
        if result != [("ok",)]:
            self.conn.close()
            detail = "; ".join(r[0] for r in result[:3])
            raise StoreCorrupt(f"{self.path} failed its integrity check ({detail}); it was left untouched")

    # The integrity check reads the whole store (0.2 s for 100,000 files, 1 s for a million: as
    # long as a `find` of the folder), so it runs when the store may have changed outside shoal:
    # a store closed by shoal leaves a stamp of its files (device, inode, size, mtime of the
    # database and its WAL); an open that finds them as stamped skips the check. A crash leaves
    # no stamp, any other writer changes an mtime, and `shoal doctor` always checks.

    def _stamp_file(self) -> Path:
        return self.path.with_name(self.path.name + ".closed")

    def _stamp(self) -> str:
        parts = []
        for p in (self.path, self.path.with_name(self.path.name + "-wal")):
            try:
                st = os.stat(p)
            except FileNotFoundError:
                st = None
            if st is None or st.st_size == 0:  # opening makes an empty WAL
                parts.append("-")
            else:
                parts.append(f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}")
        return " ".join(parts)

    def _migrate(self, existed: bool) -> None:
        have = current_version(self.conn)
        latest = available_migrations()[-1][0]
        if have > latest:
            raise StoreError(
                f"{self.path} was written by a newer shoal (schema {have} > {latest}); upgrade shoal"
            )
        if existed and have < latest:
            backup = self.path.with_name(f"{self.path.name}.bak-v{have}")
            n = 1
            while backup.exists():  # an older backup (or a restored one's source) is never overwritten
                backup = self.path.with_name(f"{self.path.name}.bak-v{have}.{n}")
                n += 1
            self.conn.execute("VACUUM INTO ?", (str(backup),))
        self.conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        apply_migrations(self.conn, int(time.time()))

    def _ensure_identity(self) -> None:
        with self.conn:
            if self.get_meta("device_id") is None:
                self.set_meta("device_id", str(uuid.uuid4()))
            if self.get_meta("incarnation_id") is None:
                self.set_meta("incarnation_id", str(uuid.uuid4()))

    @classmethod
    def reader(cls, path: Path) -> Store:
        """A read-only Store over its own connection to an existing store (no checks, no
        migrations): for another thread, while the owner's connection is busy."""
        self = cls.__new__(cls)
        self.path = Path(path)
        self.conn = apsw.Connection(str(self.path), flags=apsw.SQLITE_OPEN_READONLY)
        self.conn.setbusytimeout(10_000)
        return self

    def close(self) -> None:
        self.conn.close()
        stamp = self._stamp_file()
        tmp = stamp.with_name(stamp.name + ".tmp")
        try:
            tmp.unlink(missing_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
            with open(fd, "w") as f:
                f.write(self._stamp())
            os.replace(tmp, stamp)
        except OSError:
            pass  # no stamp: the next open checks the store

    def transaction(self):
        """A context manager: everything inside commits together or not at all."""
        return self.conn

    # -- meta -------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self.conn.execute("DELETE FROM meta WHERE key=?", (key,))
        else:
            self.conn.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, value),
            )

    @property
    def device_id(self) -> str:
        return self.get_meta("device_id")  # type: ignore[return-value]

    @property
    def incarnation_id(self) -> str:
        return self.get_meta("incarnation_id")  # type: ignore[return-value]

    # -- folders ----------------------------------------------------------------

    def ensure_folder(self, folder_id: str, path: str) -> FolderRow:
        self.conn.execute(
            "INSERT INTO folders(id, path) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET path=excluded.path",
            (folder_id, path),
        )
        return self.folder(folder_id)  # type: ignore[return-value]

    def folder(self, folder_id: str) -> FolderRow | None:
        row = self.conn.execute(
            "SELECT id, path, marker_seen, first_scan_at, paused, pull_cursor, last_sync_at"
            " FROM folders WHERE id=?",
            (folder_id,),
        ).fetchone()
        if row is None:
            return None
        return FolderRow(row[0], row[1], bool(row[2]), row[3], row[4], row[5], row[6])

    def folders(self) -> list[FolderRow]:
        ids = [r[0] for r in self.conn.execute("SELECT id FROM folders ORDER BY id")]
        return [self.folder(i) for i in ids]  # type: ignore[misc]

    def fs_traits(self, folder_id: str, root: str) -> FsTraits | None:
        """The folder's filesystem traits as probed at `root`; None if never probed there."""
        row = self.conn.execute("SELECT fs_folds_case, fs_modes FROM folders WHERE id=? AND fs_root=?",
                                (folder_id, root)).fetchone()
        return None if row is None else FsTraits(bool(row[0]), bool(row[1]))

    def set_fs_traits(self, folder_id: str, root: str, traits: FsTraits) -> None:
        self.conn.execute("UPDATE folders SET fs_root=?, fs_folds_case=?, fs_modes=? WHERE id=?",
                          (root, int(traits.folds_case), int(traits.modes), folder_id))

    def update_folder(self, folder_id: str, **fields) -> None:
        allowed = {"marker_seen", "first_scan_at", "paused", "pull_cursor", "last_sync_at", "path"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"unknown folder fields {bad}")
        sets = ", ".join(f"{k}=?" for k in fields)
        self.conn.execute(f"UPDATE folders SET {sets} WHERE id=?", (*fields.values(), folder_id))

    # -- the index --------------------------------------------------------------

    def iter_files(self, folder_id: str, *, include_deleted: bool = True, under: str = "",
                   recursive: bool = True, dirs: bool | None = None) -> Iterator[FileState]:
        """Every index row of a folder (or of its directory `under`; only that directory's own
        files when not `recursive`) in path order (binary, as the scanner walks); with `dirs`
        False only files and symlinks, True only directories.

        Rows stream from a second connection holding one read snapshot (WAL), so the caller
        may write to the store while iterating and never has the whole folder in memory.
        """
        where, args = _under(folder_id, under, recursive)
        sql = f"SELECT {_FILE_COLS} FROM files WHERE {where}"
        if not include_deleted:
            sql += " AND deleted=0"
        if dirs is not None:
            sql += " AND kind = 'dir'" if dirs else " AND kind <> 'dir'"
        sql += " ORDER BY path"
        reader = apsw.Connection(str(self.path), flags=apsw.SQLITE_OPEN_READONLY)
        reader.setbusytimeout(10_000)
        try:
            with reader:  # one read transaction: a consistent snapshot
                for row in reader.execute(sql, args):
                    yield _file(row)
        finally:
            reader.close()

    def file_keys(self, folder_id: str, *, under: str = "", recursive: bool = True) -> FileKeys:
        """The index's files and symlinks (not directories) of a folder, or of its directory
        `under` (only its own files when not `recursive`), tombstones included, in path order, as
        plain tuples (path, kind, size, mtime_ns, inode, deleted): what a rescan compares with the
        disk, with no object made per row. FileKeys.states turns some of them into FileStates.
        One read snapshot on a second connection, as iter_files; close it (or use `with`)."""
        where, args = _under(folder_id, under, recursive)
        return FileKeys(self.path, where + " AND kind <> 'dir'", args)

    def versions_of(self, folder_id: str, paths: list[str]) -> dict[str, int | None]:
        """path -> index version for many paths at once (the bases of a push batch)."""
        out: dict[str, int | None] = {}
        for i in range(0, len(paths), 500):
            chunk = paths[i:i + 500]
            out.update(self.conn.execute(
                f"SELECT path, version FROM files WHERE folder_id=? AND path IN ({','.join('?' * len(chunk))})",
                (folder_id, *chunk)))
        return out

    def get_file(self, folder_id: str, path: str) -> FileState | None:
        row = self.conn.execute(
            f"SELECT {_FILE_COLS} FROM files WHERE folder_id=? AND path=?", (folder_id, path)
        ).fetchone()
        return _file(row) if row else None

    def find_by_shas(self, shas: Iterable[str]) -> dict[str, list[FileState]]:
        """find_by_sha for many contents at once: sha256 -> live index rows holding it (every
        sha asked about is a key; most have none)."""
        out: dict[str, list[FileState]] = {sha: [] for sha in shas}
        wanted = list(out)
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            for r in self.conn.execute(f"SELECT {_FILE_COLS} FROM files WHERE sha256 IN ({','.join('?' * len(chunk))})"
                                       " AND deleted=0 AND kind IN ('file', 'exec')", chunk):
                out[r[6]].append(_file(r))
        return out

    def find_by_sha(self, sha256: str) -> list[FileState]:
        """Live index rows (any folder) whose content has this SHA-256: local copies to reuse."""
        return self.find_by_shas([sha256])[sha256]

    _PUT_FILE = (f"INSERT INTO files({_FILE_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)"
                 " ON CONFLICT(folder_id, path) DO UPDATE SET kind=excluded.kind, size=excluded.size,"
                 " mtime_ns=excluded.mtime_ns, inode=excluded.inode, sha256=excluded.sha256,"
                 " deleted=excluded.deleted, target=excluded.target, version=excluded.version")

    def put_file(self, fs: FileState) -> None:
        self.put_files([fs])

    def put_files(self, files: Iterable[FileState]) -> None:
        """Index many states (one statement prepared once, not one per file)."""
        self.conn.executemany(self._PUT_FILE, [(f.folder_id, f.path, f.kind, f.size, f.mtime_ns, f.inode, f.sha256,
                                                int(f.deleted), f.target, f.version) for f in files])

    def set_version(self, folder_id: str, path: str, version: int | None) -> None:
        self.conn.execute(
            "UPDATE files SET version=? WHERE folder_id=? AND path=?", (version, folder_id, path)
        )

    def folder_totals(self, folder_id: str) -> tuple[int, int]:
        """(live files, bytes) in the index of a folder (directories are not counted)."""
        row = self.conn.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM files WHERE folder_id=? AND deleted=0 AND kind <> 'dir'",
            (folder_id,),
        ).fetchone()
        return row[0], row[1]

    # -- outbox -----------------------------------------------------------------

    _RECORD = ("INSERT INTO outbox(folder_id, path, kind, size, mtime_ns, sha256, target, deleted,"
               " moved_from, conflict_of, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)")

    def record_change(self, fs: FileState, *, moved_from: str | None = None,
                      conflict_of: str | None = None, now: int | None = None) -> int:
        """Index `fs` and append its changelog row, in one transaction; returns the seq."""
        # Inside a caller's transaction (a scan batch) a nested savepoint would only cost time.
        with (self.conn if self.conn.get_autocommit() else contextlib.nullcontext()):
            self.put_file(fs)
            self.conn.execute(self._RECORD, (fs.folder_id, fs.path, fs.kind, fs.size, fs.mtime_ns, fs.sha256,
                                             fs.target, int(fs.deleted), moved_from, conflict_of,
                                             int(now if now is not None else time.time())))
            return self.conn.last_insert_rowid()

    def record_changes(self, files: list[FileState], now: int) -> None:
        """record_change for many states (no moves, no conflicts), in one transaction and two
        prepared statements: the changelog rows get seqs in the list's order."""
        with (self.conn if self.conn.get_autocommit() else contextlib.nullcontext()):
            self.put_files(files)
            self.conn.executemany(self._RECORD, [(f.folder_id, f.path, f.kind, f.size, f.mtime_ns, f.sha256, f.target,
                                                  int(f.deleted), None, None, now) for f in files])

    def pending_changes(self, folder_id: str, limit: int = 1000, after_seq: int = 0) -> list[Change]:
        """Pending outbox rows of a folder in seq order."""
        return [
            _change(r)
            for r in self.conn.execute(
                f"SELECT {_OUTBOX_COLS} FROM outbox WHERE folder_id=? AND {_PENDING} AND seq>?"
                " ORDER BY seq LIMIT ?",
                (folder_id, after_seq, limit),
            )
        ]

    def pending_count(self, folder_id: str) -> int:
        return self.conn.execute(
            f"SELECT count(*) FROM outbox WHERE folder_id=? AND {_PENDING}", (folder_id,)
        ).fetchone()[0]

    def pending_paths(self, folder_id: str) -> set[str]:
        """Paths of a folder with a local change waiting to be pushed."""
        return {r[0] for r in self.conn.execute(
            f"SELECT DISTINCT path FROM outbox WHERE folder_id=? AND {_PENDING}", (folder_id,))}

    def mark_outbox(self, seqs: Iterable[int], state: OutboxState, version: int | None = None) -> None:
        state = OutboxState(state)
        self.conn.executemany(
            "UPDATE outbox SET state=?, version=? WHERE seq=?", [(state.value, version, s) for s in seqs]
        )

    def mark_pushed(self, folder_id: str, done: list[tuple[int, str, int | None]]) -> None:
        """(seq, path, hub version) the hub accepted: mark the rows and index the versions, at once."""
        with self.conn:
            self.conn.executemany("UPDATE outbox SET state=?, version=? WHERE seq=?",
                                  [(OutboxState.PUSHED.value, v, seq) for seq, _, v in done])
            self.conn.executemany("UPDATE files SET version=? WHERE folder_id=? AND path=?",
                                  [(v, folder_id, path) for _, path, v in done if v is not None])

    def keep_local_only(self, folder_id: str) -> None:
        """Pending rows of a receive-only folder are never pushed: mark them local."""
        self.conn.execute(
            f"UPDATE outbox SET state=? WHERE folder_id=? AND {_PENDING}", (OutboxState.LOCAL.value, folder_id))

    def set_moved_from(self, folder_id: str, path: str, moved_from: str) -> None:
        """Mark the pending add of `path` as the new place of content that left `moved_from`."""
        self.conn.execute(
            f"UPDATE outbox SET moved_from=? WHERE folder_id=? AND path=? AND {_PENDING} AND deleted=0",
            (moved_from, folder_id, path),
        )

    def reset_for_new_hub(self, folder_id: str, now: int) -> int:
        """The hub changed identity: forget hub versions and re-announce every live file.

        Tombstones go (their versions meant something only on the old hub), the pull cursor
        restarts, and each live file without a pending row gets one, so the device merges
        its files into the new hub; nothing local is deleted. Returns the rows queued.
        """
        with self.conn:
            self.conn.execute("DELETE FROM files WHERE folder_id=? AND deleted=1", (folder_id,))
            self.conn.execute("UPDATE files SET version=NULL WHERE folder_id=?", (folder_id,))
            self.conn.execute("UPDATE folders SET pull_cursor=0 WHERE id=?", (folder_id,))
            self.conn.execute("DELETE FROM sealed_rows WHERE folder_id=?", (folder_id,))
            self.conn.execute("DELETE FROM sealed_paths WHERE folder_id=?", (folder_id,))
            self.conn.execute("DELETE FROM meta WHERE key=?", (folder_key_meta(folder_id),))
            self.conn.execute(
                f"DELETE FROM outbox WHERE folder_id=? AND {_PENDING} AND deleted=1", (folder_id,))
            self.conn.execute(
                "INSERT INTO outbox(folder_id, path, kind, size, mtime_ns, sha256, target, deleted,"
                " created_at) SELECT f.folder_id, f.path, f.kind, f.size, f.mtime_ns, f.sha256, f.target,"
                " 0, ? FROM files f WHERE f.folder_id=? AND f.deleted=0 AND NOT EXISTS (SELECT 1 FROM"
                f" outbox o WHERE o.folder_id=f.folder_id AND o.path=f.path AND o.{_PENDING})",
                (now, folder_id),
            )
            return self.conn.changes()

    def replayed_rows(self, folder_id: str, rows: list[tuple[str, str, int, int, str]]) -> list[int]:
        """Remember the (device, incarnation, seq, version, path) of sealed rows read from the
        hub; returns the indexes of rows whose key was read before under another version
        (replays). Also remembers the newest version read of each path (see read_version)."""
        with self.conn:
            self.conn.executemany(
                "INSERT INTO sealed_rows(folder_id, device_id, incarnation, seq, version) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING", [(folder_id, *r[:4]) for r in rows])
            self.conn.executemany(
                "INSERT INTO sealed_paths(folder_id, path, version) VALUES (?, ?, ?) ON CONFLICT DO UPDATE"
                " SET version = max(version, excluded.version)", [(folder_id, r[4], r[3]) for r in rows])
            return [i for i, (dev, inc, seq, version, _path) in enumerate(rows)
                    if self.conn.execute("SELECT version FROM sealed_rows WHERE folder_id=? AND device_id=?"
                                         " AND incarnation=? AND seq=?",
                                         (folder_id, dev, inc, seq)).fetchone()[0] != version]

    def read_version(self, folder_id: str, path: str) -> int | None:
        """The newest version of `path` read from the hub's changelog (encrypted folders)."""
        row = self.conn.execute("SELECT version FROM sealed_paths WHERE folder_id=? AND path=?",
                                (folder_id, path)).fetchone()
        return row[0] if row else None

    def prune_outbox(self, keep_after: int) -> None:
        """Forget pushed rows older than `keep_after` (epoch s): the hub holds them now."""
        self.conn.execute(
            f"DELETE FROM outbox WHERE NOT {_PENDING} AND created_at < ?", (keep_after,)
        )

    # -- errors -----------------------------------------------------------------

    def record_error(self, folder_id: str, path: str, kind: ErrorKind, message: str,
                     now: int, next_retry: int | None) -> None:
        """Record (or count again) an error of a path; `next_retry` None: no timer retries it."""
        kind = ErrorKind(kind)
        next_retry = _NO_RETRY if next_retry is None else next_retry
        self.conn.execute(
            "INSERT INTO errors(folder_id, path, kind, message, retries, first_at, next_retry)"
            " VALUES (?,?,?,?,0,?,?) ON CONFLICT(folder_id, path, kind) DO UPDATE SET"
            " message=excluded.message, retries=errors.retries+1, next_retry=excluded.next_retry",
            (folder_id, path, kind.value, message, now, next_retry),
        )

    def clear_error(self, folder_id: str, path: str, kind: ErrorKind | None = None) -> None:
        if kind is None:
            self.conn.execute("DELETE FROM errors WHERE folder_id=? AND path=?", (folder_id, path))
        else:
            self.conn.execute(
                "DELETE FROM errors WHERE folder_id=? AND path=? AND kind=?",
                (folder_id, path, ErrorKind(kind).value),
            )

    def clear_errors(self, folder_id: str, paths: Iterable[str], kind: ErrorKind | None = None) -> None:
        """Forget the errors (of `kind`, or all) of these paths: the folder's few paths with one
        are read first, so thousands of paths cost one query, not one per path."""
        if kind is None:
            have = {r[0] for r in self.conn.execute("SELECT path FROM errors WHERE folder_id=?", (folder_id,))}
            gone = [(folder_id, p) for p in paths if p in have]
            if gone:
                self.conn.executemany("DELETE FROM errors WHERE folder_id=? AND path=?", gone)
            return
        kind = ErrorKind(kind)
        have = {r[0] for r in self.conn.execute("SELECT path FROM errors WHERE folder_id=? AND kind=?",
                                                (folder_id, kind.value))}
        gone = [(folder_id, p, kind.value) for p in paths if p in have]
        if gone:
            self.conn.executemany("DELETE FROM errors WHERE folder_id=? AND path=? AND kind=?", gone)

    def clear_read_errors_except(self, folder_id: str, keep: set[str]) -> None:
        """Forget read errors of a folder except those of `keep` (met again by this scan)."""
        for e in self.errors(folder_id):
            if e.kind is ErrorKind.READ and e.path not in keep:
                self.clear_error(folder_id, e.path, ErrorKind.READ)

    def errors(self, folder_id: str | None = None) -> list[PathError]:
        sql = "SELECT folder_id, path, kind, message, retries, next_retry FROM errors"
        args: tuple = ()
        if folder_id is not None:
            sql += " WHERE folder_id=?"
            args = (folder_id,)
        return [PathError.from_row(r) for r in self.conn.execute(sql + " ORDER BY folder_id, path", args)]

    def error_retries(self, folder_id: str, path: str, kind: ErrorKind) -> int:
        row = self.conn.execute(
            "SELECT retries FROM errors WHERE folder_id=? AND path=? AND kind=?",
            (folder_id, path, ErrorKind(kind).value),
        ).fetchone()
        return row[0] + 1 if row else 0

    # -- conflicts --------------------------------------------------------------

    def record_conflict(self, folder_id: str, path: str, conflict_path: str | None,
                        winner: str | None, loser: str | None, now: int,
                        hub_version: int | None = None) -> None:
        # UNIQUE treats NULLs as distinct, so the NOT EXISTS (with IS) also dedupes a newest-wins
        # conflict (conflict_path NULL) recorded again, e.g. when a push is retried after a crash.
        self.conn.execute(
            "INSERT OR IGNORE INTO conflicts(folder_id, path, conflict_path, winner_device,"
            " loser_device, detected_at, hub_version) SELECT ?,?,?,?,?,?,? WHERE NOT EXISTS ("
            "SELECT 1 FROM conflicts WHERE folder_id=? AND path=? AND conflict_path IS ?"
            " AND hub_version IS ?)",
            (folder_id, path, conflict_path, winner, loser, now, hub_version,
             folder_id, path, conflict_path, hub_version),
        )

    def forget_conflict(self, folder_id: str, path: str, conflict_path: str | None) -> None:
        """The user resolved this conflict (`shoal conflicts resolve`): it is no longer listed."""
        self.conn.execute("DELETE FROM conflicts WHERE folder_id=? AND path=? AND conflict_path IS ?",
                          (folder_id, path, conflict_path))

    def conflicts(self, folder_id: str | None = None) -> list[dict]:
        sql = ("SELECT folder_id, path, conflict_path, winner_device, loser_device, detected_at"
               " FROM conflicts")
        args: tuple = ()
        if folder_id is not None:
            sql += " WHERE folder_id=?"
            args = (folder_id,)
        keys = ("folder", "path", "conflict_path", "winner_device", "loser_device", "detected_at")
        return [dict(zip(keys, r)) for r in self.conn.execute(sql + " ORDER BY id", args)]

    # -- sync runs --------------------------------------------------------------

    def start_run(self, folder_id: str | None, now: int) -> int:
        # A run left 'running' by a process that died is marked interrupted, not left dangling.
        self.conn.execute("UPDATE sync_runs SET status='interrupted' WHERE status='running'")
        self.conn.execute(
            "INSERT INTO sync_runs(folder_id, started_at) VALUES (?, ?)", (folder_id, now)
        )
        return self.conn.last_insert_rowid()

    def update_run(self, run_id: int, **fields) -> None:
        allowed = {"finished_at", "status", "phase", "files_done", "bytes_done", "pushed", "pulled",
                   "last_path", "error"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"unknown run fields {bad}")
        sets = ", ".join(f"{k}=?" for k in fields)
        self.conn.execute(f"UPDATE sync_runs SET {sets} WHERE id=?", (*fields.values(), run_id))

    def last_run(self) -> dict | None:
        row = self.conn.execute(
            "SELECT id, folder_id, started_at, finished_at, status, phase, files_done, bytes_done,"
            " pushed, pulled, error FROM sync_runs ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if not row:
            return None
        keys = ("id", "folder", "started_at", "finished_at", "status", "phase", "files_done",
                "bytes_done", "pushed", "pulled", "error")
        return dict(zip(keys, row))

    def integrity_problems(self) -> list[str]:
        """`PRAGMA quick_check` problems (empty when healthy)."""
        rows = [r[0] for r in self.conn.execute("PRAGMA quick_check")]
        return [] if rows == ["ok"] else rows

