"""The scanner: compares a folder on disk with its index and records what changed.

The disk is the truth; watcher events only say where to look. The walk is streamed in
path order against an ordered query of the index (a merge join), so memory stays flat
whatever the folder size. Files whose (size, mtime_ns, inode) are unchanged are not read;
the rest are hashed with SHA-256 on a small thread pool (hashlib releases the GIL).
A directory's files are read and compared with the index a run at a time, as lists of tuples,
so that a rescan of an unchanged folder takes no Python step per file.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import stat
import threading
import time
import unicodedata
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from itertools import compress, islice, repeat
from operator import add, and_, attrgetter
from pathlib import Path
from typing import NamedTuple

from shoal.core.guards import (MARKER_CREATE, MARKER_PAUSE, is_mass_delete, is_mass_delete_pause,
                                marker_decision, mass_delete_reason)
from shoal.core.ignore import IgnoreRules
from shoal.core.paths import FOLDER_ID_FILE, SHOAL_DIR, TMP_DIR
from shoal.localstore import Store
from shoal.model import EMPTY_SHA, KIND_DIR, KIND_EXEC, KIND_FILE, KIND_SYMLINK, ErrorKind, FileState, FsTraits
from shoal.scan.fsprobe import folder_traits

HASH_BUFFER = 1 << 20
HASH_THREADS = 2
SMALL_FILE = 256 << 10  # hashed inline, not on the pool
BATCH_FILES = 4096  # files per transaction (each commit is an fsync)
BATCH_BYTES = 256 << 20
READ_RETRY_SECONDS = 60

OnFilesScanned = Callable[[int, int, str], None]  # (files so far, bytes so far, current path)


@dataclass
class ScanResult:
    folder_id: str
    added: int = 0
    modified: int = 0
    deleted: int = 0
    moved: int = 0
    dirs_added: int = 0  # directories are counted apart from files
    dirs_deleted: int = 0
    unchanged: int = 0
    deferred: int = 0  # still being written, or changed while hashed: picked up next time
    errors: int = 0
    files: int = 0
    bytes: int = 0
    paused: str | None = None
    error_paths: set[str] = field(default_factory=set)

    @property
    def changes(self) -> int:
        return self.added + self.modified + self.deleted + self.dirs_added + self.dirs_deleted


class DiskEntry(NamedTuple):
    path: str  # NFC, '/'-separated, relative to the folder root
    os_path: str  # the real path on disk
    kind: str
    size: int
    mtime_ns: int
    inode: int


_buffers = threading.local()


def sha256_file(path: str, buffer_size: int = HASH_BUFFER) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file read in large buffers. Raises OSError."""
    h = hashlib.sha256()
    buf = getattr(_buffers, "buf", None)  # one buffer per thread: a fresh 1 MiB per file costs
    if buf is None or len(buf) != buffer_size:
        buf = _buffers.buf = bytearray(buffer_size)
    view = memoryview(buf)
    total = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
            total += n
    return h.hexdigest(), total


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def marker_path(root: Path) -> Path:
    return root / FOLDER_ID_FILE


def check_marker(store: Store, folder_id: str, root: Path) -> str | None:
    """Ensure the folder and its marker exist; returns a pause reason, or None if syncable.
    What to do is core.guards.marker_decision's; this carries it out."""
    row = store.folder(folder_id)
    seen = bool(row and row.marker_seen)
    marker = marker_path(root)
    content: str | None = None
    exists = root.is_dir()
    if exists:
        try:
            content = marker.read_text(encoding="utf-8")
        except FileNotFoundError:
            pass
        except OSError as e:
            return f"cannot read folder marker {marker}: {e.strerror}"
    action, reason = marker_decision(folder_id, seen_before=seen, folder_exists=exists, marker=content,
                                     root=str(root), marker_path=str(marker))
    if action == MARKER_PAUSE:
        return reason
    if action == MARKER_CREATE:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            return f"cannot create folder {root}: {e.strerror}"
        try:
            (root / SHOAL_DIR).mkdir(exist_ok=True)
            (root / TMP_DIR).mkdir(exist_ok=True)
            marker.write_text(folder_id + "\n", encoding="utf-8")
        except OSError as e:
            return f"cannot write folder marker {marker}: {e.strerror}"
    if not seen:
        store.update_folder(folder_id, marker_seen=1)
    return None


class DiskRun(NamedTuple):
    """Files and symlinks of one directory that are consecutive in the walk's order (a directory's
    files before, between and after its subdirectories), in the walk's order."""

    prefix: str  # the directory's NFC path + "/" ("" at the folder root)
    os_dir: str  # the directory on disk
    names: Sequence[str]  # NFC names
    os_names: Sequence[str]  # the names on disk (the same as `names` where they are ASCII)
    stats: Sequence[os.stat_result]  # lstat
    kinds: Sequence[str]

    def entries(self) -> list[DiskEntry]:
        prefix, os_dir = self.prefix, self.os_dir
        os_dir += "" if os_dir.endswith("/") else "/"  # os.path.join's result for a listed name, cheaper
        return [DiskEntry(prefix + name, os_dir + os_name, kind, st.st_size, st.st_mtime_ns, st.st_ino)
                for name, os_name, kind, st in zip(self.names, self.os_names, self.kinds, self.stats)]


_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_FORMAT_BITS = 0o170000  # stat.S_IFMT's mask
#: The kind of what a walk meets, by its mode's format and owner-exec bits; what has none
#: (directories, sockets, fifos, devices) is not a file to sync. disk_kind, as a table.
_KIND_BY_MODE = {stat.S_IFREG: KIND_FILE, stat.S_IFREG | stat.S_IXUSR: KIND_EXEC,
                 stat.S_IFLNK: KIND_SYMLINK, stat.S_IFLNK | stat.S_IXUSR: KIND_SYMLINK}
_MODE = attrgetter("st_mode")
_SIZE = attrgetter("st_size")
_MTIME = attrgetter("st_mtime_ns")
_INODE = attrgetter("st_ino")


class _DirFrame:
    """A directory being walked: its files not yet yielded, its subdirectories not yet entered."""

    __slots__ = ("fd", "prefix", "os_dir", "names", "os_names", "stats", "kinds", "dirs", "next_dir", "pos")

    def __init__(self, fd: int, prefix: str, os_dir: str, files: list, dirs: list[tuple[str, str]]):
        self.fd, self.prefix, self.os_dir = fd, prefix, os_dir
        self.names, self.os_names, self.stats, self.kinds = files
        self.dirs = dirs  # (NFC name, name on disk), sorted
        self.next_dir = 0
        self.pos = 0

    def run(self, end: int) -> DiskRun:
        pos, self.pos = self.pos, end
        return DiskRun(self.prefix, self.os_dir, self.names[pos:end], self.os_names[pos:end], self.stats[pos:end],
                       self.kinds[pos:end])


def _read_dir(fd: int, rel_dir: str, os_dir: str, rules: IgnoreRules, on_error, modes: bool):
    """The files (sorted (NFC names, names on disk, lstat, kinds)) and subdirectories (sorted
    (NFC name, name on disk)) of the directory open as `fd`, ignored ones left out.

    The common case (ASCII names, nothing ignored, nothing vanishing) runs without a Python
    step per entry: listdir, lstat relative to the directory, and the kinds by table."""
    prefix = f"{rel_dir}/" if rel_dir else ""
    os_names = sorted(os.listdir(fd))  # sorted before lstat, so that the results need no sorting
    try:
        stats = list(map(partial(os.lstat, dir_fd=fd), os_names))
    except OSError:  # one vanished or cannot be looked at: the others still count
        kept = []
        for os_name in os_names:
            try:
                kept.append((os_name, os.lstat(os_name, dir_fd=fd)))
            except OSError as err:
                on_error(prefix + _nfc(os_name), err)
        os_names, stats = [n for n, _ in kept], [st for _, st in kept]
    names = os_names
    nfc = not all(map(str.isascii, os_names))
    if nfc:
        names = list(map(_nfc, os_names))
    mode_list = list(map(_MODE, stats))
    kinds = list(map(_KIND_BY_MODE.get, map(and_, mode_list, repeat(_FORMAT_BITS | stat.S_IXUSR if modes
                                                                         else _FORMAT_BITS))))
    is_dir = list(map(stat.S_ISDIR, mode_list))
    # With no patterns only `.shoal` (in any case) is ignored: see IgnoreRules.is_ignored_entry.
    if rules.patterns or SHOAL_DIR in set(map(str.casefold, names)):
        keep = [not rules.is_ignored_entry(prefix + name, name, d) for name, d in zip(names, is_dir)]
        names, os_names, stats, kinds, is_dir = (list(compress(seq, keep))
                                                 for seq in (names, os_names, stats, kinds, is_dir))
    dirs: list[tuple[str, str]] = []
    if None in kinds:  # directories, or what is not synced (fifos, sockets, devices)
        # `name/` is a directory's sort key: "a.b/" sorts before "a/"
        dirs = sorted(((name, os_name) for name, os_name, d in zip(names, os_names, is_dir) if d),
                      key=lambda t: t[0] + "/")
        synced = [k is not None for k in kinds]
        names, os_names, stats, kinds = (list(compress(seq, synced)) for seq in (names, os_names, stats, kinds))
    if nfc:  # NFC names: in another order, and two names may be one path
        files = _one_per_name(sorted(zip(names, os_names, stats, kinds)), prefix, on_error)
        dirs = _one_per_name(dirs, prefix, on_error)
        return [list(col) for col in zip(*files)] if files else [[], [], [], []], dirs
    return [names, os_names, stats, kinds], dirs


def _nfc(name: str) -> str:
    return name if name.isascii() else unicodedata.normalize("NFC", name)


def _one_per_name(entries: list, prefix: str, on_error) -> list:
    """Sorted entries without the second of two that are one path after NFC normalisation:
    shoal cannot tell them apart on other devices, so the second is reported, not synced."""
    out: list = []
    for t in entries:
        if out and out[-1][0] == t[0]:
            on_error(prefix + t[0], OSError(0, "another name here is the same path after NFC normalisation"))
            continue
        out.append(t)
    return out


def _open_frame(name: str, dir_fd: int | None, flags: int, rel: str, os_path: str, rules: IgnoreRules,
                on_error: Callable[[str, OSError], None], modes: bool) -> _DirFrame | None:
    """Open and list the directory `rel` of the walk (`name` relative to `dir_fd`, or a path);
    None when it cannot be (reported through on_error)."""
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError as e:
        on_error(rel, e)
        return None
    try:
        files, dirs = _read_dir(fd, rel, os_path, rules, on_error, modes)
    except OSError as e:
        os.close(fd)
        on_error(rel, e)
        return None
    return _DirFrame(fd, f"{rel}/" if rel else "", os_path, files, dirs)


def walk_runs(root: Path, rules: IgnoreRules, on_error: Callable[[str, OSError], None], *,
              start: str = "", recursive: bool = True, modes: bool = True,
              on_dir: Callable[[str, str], None] | None = None) -> Iterator[DiskRun]:
    """Every file and symlink under `root` (or under its subdirectory `start`; only the
    directory's own files when not `recursive`), in the index's path order, ignored ones left
    out, as runs of one directory's consecutive files (DiskRun). A file with its owner's exec
    bit is KIND_EXEC, unless the filesystem has no `modes`. Each directory met (not ignored;
    also a subdirectory of a part that is not `recursive`) is passed to `on_dir` (its path and
    its path on disk), not yielded: directories are merged with the index in a pass of their own.

    Entries of one directory are sorted by NFC name, directories as `name/`, which makes the
    whole walk ordered exactly like `ORDER BY path` over '/'-joined NFC paths. Directories are
    opened relative to their parent, never through a symlink. Iterative (a stack of open
    directories): the walk's depth is not Python's recursion limit.
    """
    if start:
        os_start = os.path.join(root, *start.split("/"))
        if rules.is_ignored(start, True) or os.path.islink(os_start) or not os.path.isdir(os_start):
            return
    else:
        os_start = str(root)
    top = _open_frame(os_start, None, _DIR_FLAGS, start, os_start, rules, on_error, modes)
    if top is None:
        return
    stack: list[_DirFrame] = [top]
    try:
        while stack:
            frame = stack[-1]
            if frame.next_dir == len(frame.dirs):
                if frame.pos < len(frame.names):
                    yield frame.run(len(frame.names))
                os.close(frame.fd)
                stack.pop()
                continue
            name, os_name = frame.dirs[frame.next_dir]
            frame.next_dir += 1
            end = bisect_left(frame.names, name + "/", frame.pos)  # its files that sort before `name/`
            if end > frame.pos:
                yield frame.run(end)
            rel, os_path = frame.prefix + name, os.path.join(frame.os_dir, os_name)
            if on_dir is not None:
                on_dir(rel, os_path)
            if not recursive:
                continue
            sub = _open_frame(os_name, frame.fd, _DIR_FLAGS | _NOFOLLOW, rel, os_path, rules, on_error, modes)
            if sub is not None:
                stack.append(sub)
    finally:
        for frame in stack:  # the consumer stopped early
            os.close(frame.fd)



def walk(root: Path, rules: IgnoreRules, on_error: Callable[[str, OSError], None], *,
         start: str = "", recursive: bool = True, modes: bool = True,
         on_dir: Callable[[str, str], None] | None = None) -> Iterator[DiskEntry]:
    """walk_runs, one DiskEntry at a time."""
    for run in walk_runs(root, rules, on_error, start=start, recursive=recursive, modes=modes, on_dir=on_dir):
        yield from run.entries()


def disk_kind(st: os.stat_result, modes: bool) -> str:
    """The kind of a file or symlink on disk (a regular file's exec bit counts only where the
    filesystem has modes)."""
    if stat.S_ISLNK(st.st_mode):
        return KIND_SYMLINK
    return KIND_EXEC if modes and st.st_mode & stat.S_IXUSR else KIND_FILE


def hash_entry(entry: DiskEntry) -> tuple[DiskEntry, str | None, str | None, OSError | None]:
    """(entry as re-stat-ed, sha256, symlink target, error). sha256 None: changed while hashed."""
    try:
        if entry.kind == KIND_SYMLINK:
            target = os.readlink(entry.os_path)
            return entry, sha256_bytes(os.fsencode(target)), target, None
        digest, size = sha256_file(entry.os_path)
        st = os.lstat(entry.os_path)
        if size != st.st_size or st.st_mtime_ns != entry.mtime_ns or st.st_size != entry.size:
            return entry, None, None, None  # still being written
        return entry, digest, None, None
    except OSError as e:
        return entry, None, None, e


class _Recorder:
    """Hashes candidates in batches on a thread pool and records the results."""

    def __init__(self, store: Store, folder_id: str, result: ScanResult, now: float,
                 min_age: float, progress: OnFilesScanned | None, pool: ThreadPoolExecutor, *,
                 track_moves: bool = True, settled: set[str] | frozenset[str] = frozenset()):
        self.store = store
        self.folder_id = folder_id
        self.result = result
        self.now = now
        self.min_age = min_age
        self.progress = progress
        self.pool = pool
        self.batch: list[tuple[DiskEntry, FileState | None]] = []
        self.batch_bytes = 0
        self.added_by_sha: dict[str, str] = {}
        self.track_moves = track_moves
        self.settled = settled
        self.done_files = 0
        self.done_bytes = 0

    def tick(self, entry: DiskEntry) -> None:
        self.done_files += 1
        self.done_bytes += entry.size
        if self.progress and (self.done_files & 255 == 0 or entry.size > 1 << 20):
            self.progress(self.done_files, self.done_bytes, entry.path)

    def tick_many(self, files: int, nbytes: int, last_path: str) -> None:
        """`tick` for a run of unchanged files, `last_path` the last of them."""
        before = self.done_files
        self.done_files += files
        self.done_bytes += nbytes
        if self.progress and (self.done_files >> 8 != before >> 8 or nbytes > 1 << 20):
            self.progress(self.done_files, self.done_bytes, last_path)

    def add(self, entry: DiskEntry, old: FileState | None) -> None:
        if self.min_age and (self.now - entry.mtime_ns / 1e9) < self.min_age and entry.path not in self.settled:
            self.result.deferred += 1
            return
        self.batch.append((entry, old))
        self.batch_bytes += entry.size
        if len(self.batch) >= BATCH_FILES or self.batch_bytes >= BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.batch:
            return
        olds = {e.path: old for e, old in self.batch}
        # Large files are hashed on the pool (hashlib releases the GIL on big buffers); small
        # ones inline, where a thread hand-off would cost more than the hashing.
        big = {e.path: self.pool.submit(hash_entry, e) for e, _ in self.batch if e.size >= SMALL_FILE}
        hashed = [big[e.path].result() if e.path in big else hash_entry(e) for e, _ in self.batch]
        now_i = int(self.now)
        recorded: list[str] = []
        changes: list[FileState] = []  # recorded together: their seqs in the batch's order
        refreshed: list[FileState] = []  # same content: indexed, no change
        with self.store.transaction():
            for entry, digest, target, err in hashed:
                old = olds[entry.path]
                self.tick(entry)
                if err is not None:
                    self.result.errors += 1
                    self.result.error_paths.add(entry.path)
                    what = "vanished while being read" if isinstance(err, FileNotFoundError) else err.strerror
                    self.store.record_error(self.folder_id, entry.path, ErrorKind.READ, f"cannot read: {what}",
                                            now_i, now_i + READ_RETRY_SECONDS)
                    continue
                if digest is None:
                    self.result.deferred += 1
                    continue
                (changes if self._record(entry, digest, target, old) else refreshed).append(
                    FileState(self.folder_id, entry.path, entry.kind, entry.size, entry.mtime_ns, entry.inode,
                              digest, False, target, old.version if old else None))
                recorded.append(entry.path)
            # Two statements prepared once for the batch, not two per file (they were most of a
            # first index's time). A batch's paths are distinct: the order between the lists is
            # free; within `changes` it is the seqs' order.
            self.store.put_files(refreshed)
            self.store.record_changes(changes, now=int(self.now))
            # Read, so no longer unreadable: the folder's few paths with an error are looked up
            # once per batch (a DELETE per file was a tenth of a first index's time).
            self.store.clear_errors(self.folder_id, recorded, ErrorKind.READ)
        self.batch.clear()
        self.batch_bytes = 0

    def _record(self, entry: DiskEntry, digest: str, target: str | None, old: FileState | None) -> bool:
        """Counts a hashed file; returns whether it is a change (else only a metadata refresh)."""
        if old is not None and not old.deleted and old.sha256 == digest and old.kind == entry.kind:
            self.result.unchanged += 1  # same content: metadata refresh only, not a change
            return False
        if old is not None and not old.deleted:
            self.result.modified += 1
        else:
            self.result.added += 1
            if self.track_moves:
                self.added_by_sha.setdefault(digest, entry.path)
        return True


def scan_folder(store: Store, folder_id: str, root: Path, ignore: tuple[str, ...] = (), *,
                now: float | None = None, min_age: float = 0.0, allow_mass_delete: bool = False,
                progress: OnFilesScanned | None = None,
                only: list[tuple[str, bool]] | None = None, settled: set[str] | frozenset[str] = frozenset()
                ) -> ScanResult:
    """Index one folder: hash what changed, record changelog rows; returns the counts.

    `min_age` skips files modified less than that many seconds ago (still being written), but
    for the `settled` paths: files closed after writing, complete as they are.
    `only` limits the scan to these (directory, recursive) parts of the folder — where the
    watcher saw events; "" is the root. A folder's first scan is always whole.
    Never raises for a single file: unreadable or vanishing files become per-path errors.
    """
    now = time.time() if now is None else now
    root = Path(root)
    result = ScanResult(folder_id)
    row = store.ensure_folder(folder_id, str(root))
    reason = check_marker(store, folder_id, root)
    if reason is None and is_mass_delete_pause(row.paused) and not allow_mass_delete:
        reason = row.paused
    if reason is not None:
        store.update_folder(folder_id, paused=reason)
        result.paused = reason
        return result
    if row.paused:
        store.update_folder(folder_id, paused=None)
    traits = folder_traits(store, folder_id, root)
    first_scan = row.first_scan_at is None
    rules = IgnoreRules(ignore)
    unreadable_dirs: list[str] = []
    now_i = int(now)

    def on_error(rel: str, err: OSError) -> None:
        result.errors += 1
        result.error_paths.add(rel or ".")
        if rel == "" or os.path.isdir(os.path.join(root, rel)):
            unreadable_dirs.append(rel + "/" if rel else "")
        store.record_error(folder_id, rel or ".", ErrorKind.READ, f"cannot read: {err.strerror}",
                           now_i, now_i + READ_RETRY_SECONDS)

    def under_unreadable(path: str) -> bool:
        return any(path.startswith(d) for d in unreadable_dirs)

    deletions: list[FileState] = []
    dir_deletions: list[FileState] = []
    live_indexed = 0
    if first_scan or only is None:
        parts = [("", True)]
    else:
        parts = _outermost(only)
    with ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="shoal-hash") as pool:
        # A first scan sends no deletions, so it needs no table of added contents for moves.
        rec = _Recorder(store, folder_id, result, now, min_age, progress, pool, track_moves=not first_scan,
                        settled=settled)
        replaced: dict[str, int | None] = {}
        part = _Merge(store, folder_id, root, rules, on_error, under_unreadable, rec, result, deletions, traits,
                      dir_deletions, now_i, replaced)
        for start, recursive in parts:
            live_indexed += _merge(part, start, recursive)
        rec.flush()
        for path, version in replaced.items():  # the new kind's change is based on the old kind's version
            store.set_version(folder_id, path, version)
        if progress:
            progress(rec.done_files, rec.done_bytes, "")
    if parts != [("", True)]:
        live_indexed = store.folder_totals(folder_id)[0]  # the guard weighs the whole folder
    if replaced:
        deletions = [fs for fs in deletions if fs.path not in replaced]
    _record_deletions(store, folder_id, deletions, dir_deletions, live_indexed, first_scan, allow_mass_delete,
                      rec.added_by_sha, result, now_i)
    # This scan was the retry of every read error: those it did not meet again are gone.
    if parts == [("", True)]:
        store.clear_read_errors_except(folder_id, result.error_paths)
    if first_scan and result.paused is None:
        store.update_folder(folder_id, first_scan_at=now_i)
    return result


def _outermost(only: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """The parts to scan, each once: a part that a recursive part already covers is dropped."""
    parts = set(only)
    tops = {d for d, r in parts if r}

    def covered(d: str, strictly: bool) -> bool:
        return any((top != d or not strictly) and (top == "" or d == top or d.startswith(top + "/"))
                   for top in tops)

    return sorted((d, r) for d, r in parts if not covered(d, strictly=r))


class _Merge(NamedTuple):
    """What merging any part of one folder needs: where to read, what to ignore, where the
    results go (the recorder hashes and records; `deletions` collects index rows gone from disk)."""

    store: Store
    folder_id: str
    root: Path
    rules: IgnoreRules
    on_error: Callable[[str, OSError], None]
    under_unreadable: Callable[[str], bool]
    rec: _Recorder
    result: ScanResult
    deletions: list[FileState]
    traits: FsTraits
    dir_deletions: list[FileState]
    now: int
    replaced: dict[str, int | None]  # path -> base version where a file and a directory traded places


def _run_keys(run: DiskRun) -> list[tuple]:
    """The index's key tuple (path, kind, size, mtime_ns, inode, deleted: Store.file_keys) of each
    file of a run as the index would hold it unchanged (built without a Python step per file)."""
    stats = run.stats
    return list(zip(map(add, repeat(run.prefix), run.names), run.kinds, map(_SIZE, stats), map(_MTIME, stats),
                    map(_INODE, stats), repeat(0)))


class _IndexRows:
    """The index rows of a part in path order, read ahead a run at a time as key tuples
    (Store.file_keys); rows read ahead and not matched are put back as FileStates, read in one
    query per stretch, for the file-by-file merge."""

    PAGE = 256  # rows made FileStates at once when the merge asks for them one by one

    def __init__(self, keys):
        self._keys = keys
        self._back: list[FileState] = []  # put back, last first

    def take(self, n: int) -> list[tuple]:
        """The next n rows (fewer at the end) as key tuples."""
        if not self._back:
            return list(islice(self._keys.rows, n))
        got = self._back[::-1][:n]
        del self._back[len(self._back) - len(got):]
        keys = [(f.path, f.kind, f.size, f.mtime_ns, f.inode, f.deleted) for f in got]
        if len(got) < n:
            keys += islice(self._keys.rows, n - len(got))
        return keys

    def put_back(self, keys: list[tuple]) -> None:
        """Rows taken as keys, back in front of the rest (as FileStates)."""
        if keys:
            states = self._keys.states(keys[0][0], keys[-1][0])
            self._back += reversed(states)

    def unget(self, row: FileState) -> None:
        """A row `next` gave, back in front of the rest."""
        self._back.append(row)

    def next(self) -> FileState | None:
        if not self._back:
            self.put_back(list(islice(self._keys.rows, self.PAGE)))
        return self._back.pop() if self._back else None


def _merge(m: _Merge, start: str, recursive: bool) -> int:
    """Merge-join one part of the folder on disk with its index rows; returns the live rows seen.

    A run of a directory's files whose (path, kind, size, mtime_ns, inode) all equal the next
    index rows (live ones) is unchanged as a whole: one comparison of two lists of tuples, no
    Python step per file, which is what keeps a no-change rescan near `find`'s time. Any other
    run is merged file by file."""
    live_indexed = 0
    dirs: list[tuple[str, str]] = []  # (path, path on disk)
    with m.store.file_keys(m.folder_id, under=start, recursive=recursive) as keys:
        index = _IndexRows(keys)
        for run in walk_runs(m.root, m.rules, m.on_error, start=start, recursive=recursive, modes=m.traits.modes,
                             on_dir=lambda rel, os_path: dirs.append((rel, os_path))):
            n = len(run.names)
            rows = index.take(n)
            if len(rows) == n and rows == _run_keys(run):
                nbytes = sum(map(_SIZE, run.stats))
                m.result.files += n
                m.result.bytes += nbytes
                m.result.unchanged += n
                live_indexed += n
                m.rec.tick_many(n, nbytes, run.prefix + run.names[-1])
                continue
            index.put_back(rows)
            live_indexed += _merge_entries(m, run.entries(), index)
        i = index.next()
        while i is not None:  # on the index only: gone from disk
            live_indexed += _index_only(m, i)
            i = index.next()
    _merge_dirs(m, sorted(dirs, key=lambda t: t[0]), start, recursive)
    return live_indexed


def _merge_entries(m: _Merge, entries: list[DiskEntry], index: _IndexRows) -> int:
    """Merge a run's files one by one with the index rows up to its last path (those after it
    are put back); returns the live rows seen."""
    live_indexed = 0
    i = index.next()
    for d in entries:
        while i is not None and i.path < d.path:
            live_indexed += _index_only(m, i)
            i = index.next()
        m.result.files += 1
        m.result.bytes += d.size
        if i is None or d.path < i.path:
            m.rec.add(d, None)
            continue
        if not i.deleted:
            live_indexed += 1
        if not m.traits.modes and d.kind == KIND_FILE and i.kind == KIND_EXEC:
            d = d._replace(kind=KIND_EXEC)  # no modes here: the exec bit is the index's
        if (not i.deleted and i.kind == d.kind and i.size == d.size
                and i.mtime_ns == d.mtime_ns and i.inode == d.inode):
            m.result.unchanged += 1
            m.rec.tick(d)
        else:
            # Hashed even when the new mtime is implausible (SPEC: such metadata is not a
            # change by itself): the content decides, so an implausible mtime alone records
            # nothing, but it can never hide a same-size content change either.
            m.rec.add(d, i)
        i = index.next()
    if i is not None:
        index.unget(i)
    return live_indexed


def _index_only(m: _Merge, i: FileState) -> int:
    """An index row with no file on disk: a deletion unless ignored or unreadable; returns 1 if
    the row was live."""
    if i.deleted:
        return 0
    if not m.rules.is_ignored(i.path) and not m.under_unreadable(i.path):
        m.deletions.append(i)
    return 1


def _merge_dirs(m: _Merge, dirs: list[tuple[str, str]], start: str, recursive: bool) -> None:
    """Merge the directories met on disk (sorted) with the index's directory rows: a new one is
    recorded, a gone one collected for deletion. A directory has no content: only whether it
    exists is synced. A part's own directory (`start`) is merged too: it may be new or gone."""
    index: Iterator[FileState] = m.store.iter_files(m.folder_id, under=start, recursive=recursive, dirs=True)
    if start:
        own = os.path.join(m.root, *start.split("/"))
        if os.path.isdir(own) and not os.path.islink(own) and not m.rules.is_ignored(start, True):
            dirs.insert(0, (start, own))
        row = m.store.get_file(m.folder_id, start)
        if row is not None and row.kind == KIND_DIR:
            index = itertools.chain((row,), index)
    on_disk = iter(dirs)
    d, i = next(on_disk, None), next(index, None)
    with m.store.transaction():
        while d is not None or i is not None:
            if d is not None and (i is None or d[0] < i.path):
                was = m.store.get_file(m.folder_id, d[0])  # a file (or a tombstone) at that path?
                if was is not None and not was.deleted:
                    m.replaced[d[0]] = was.version  # the directory took a file's place: not a deletion
                _record_dir(m, d, was)
                d = next(on_disk, None)
            elif d is None or (i is not None and i.path < d[0]):
                if not i.deleted and not m.rules.is_ignored(i.path, True) and not m.under_unreadable(i.path):
                    if os.path.lexists(os.path.join(m.root, *i.path.split("/"))):
                        m.replaced[i.path] = i.version  # a file took its place: the file's change says so
                    else:
                        m.dir_deletions.append(i)
                i = next(index, None)
            else:
                if i.deleted:
                    _record_dir(m, d, i)
                d, i = next(on_disk, None), next(index, None)


def _record_dir(m: _Merge, found: tuple[str, str], old: FileState | None) -> None:
    rel, os_path = found
    try:
        st = os.lstat(os_path)
    except OSError as err:
        m.on_error(rel, err)
        return
    m.store.record_change(FileState(m.folder_id, rel, KIND_DIR, 0, st.st_mtime_ns, st.st_ino, EMPTY_SHA, False,
                                    None, old.version if old else None), now=m.now)
    m.result.dirs_added += 1


def scan_folders(store: Store, folders, *, now: float, min_age: float = 0.0,
                 allow_mass_delete: bool = False, progress=None,
                 parts: dict[str, list[tuple[str, bool]] | None] | None = None,
                 settled: set[tuple[str, str]] | None = None) -> list[ScanResult]:
    """Scan several folders (FolderConfig), reporting to a ProgressSink; `parts` maps a folder
    id to the parts of it to scan (see scan_folder's `only`); `settled` holds (folder id, path)
    of files closed after writing (see scan_folder). See scan_folder."""
    results = []
    for f in folders:
        if progress is not None:
            progress.phase(f.id, "scan")
        done = [0, 0]  # scan_folder reports running totals; a sink takes increments

        def advance(files: int, nbytes: int, path: str, done=done) -> None:
            progress.advance(files - done[0], nbytes - done[1], path)
            done[:] = [files, nbytes]

        results.append(scan_folder(store, f.id, f.path, f.ignore, now=now, min_age=min_age,
                                   allow_mass_delete=allow_mass_delete,
                                   progress=advance if progress is not None else None,
                                   only=(parts or {}).get(f.id),
                                   settled={p for fid, p in settled or () if fid == f.id}))
    return results


def _record_deletions(store: Store, folder_id: str, deletions: list[FileState], dir_deletions: list[FileState],
                      live_indexed: int, first_scan: bool, allow_mass_delete: bool, added_by_sha: dict[str, str],
                      result: ScanResult, now: int) -> None:
    """Record the files gone from disk, then the directories gone, deepest first (so that a
    device applying them in order finds each directory empty). The mass-delete guard weighs files."""
    if not (deletions or dir_deletions) or first_scan:
        return  # a device's first scan of a folder never sends deletions
    if is_mass_delete(len(deletions), live_indexed) and not allow_mass_delete:
        reason = mass_delete_reason(len(deletions), live_indexed)
        store.update_folder(folder_id, paused=reason)
        result.paused = reason
        return
    with store.transaction():
        for old in deletions:
            moved_to = added_by_sha.get(old.sha256)
            tomb = FileState(folder_id, old.path, old.kind, 0, old.mtime_ns, 0, old.sha256, True,
                             old.target, old.version)
            store.record_change(tomb, now=now)
            if moved_to:
                result.moved += 1
                store.set_moved_from(folder_id, moved_to, old.path)
            result.deleted += 1
        for old in sorted(dir_deletions, key=lambda fs: fs.path, reverse=True):
            store.record_change(FileState(folder_id, old.path, KIND_DIR, 0, old.mtime_ns, 0, old.sha256, True,
                                          None, old.version), now=now)
            result.dirs_deleted += 1
    if allow_mass_delete:
        store.update_folder(folder_id, paused=None)
