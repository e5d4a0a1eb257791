"""Applying pulled changes to one folder: validate, check the local file, fetch, write safely.

Per page of changes: every remote path is validated first (a refused one is recorded and
skipped, the rest go on). The local file is compared with the index; a local edit found
is indexed as a local change and wins the right to be treated as concurrent. Contents are
materialised into temp files (from a local copy of the same content when there is one,
else from the hub), made durable with one syncfs, re-checked against the disk, and renamed
into place; the replaced file goes to the trash; then the index records the new state.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import logging
import os
import random
import stat as statmod
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from shoal.core.backoff import backoff_delay
from shoal.core.conflicts import conflict_name, unique_path
from shoal.core.paths import casefold_key, validate_remote_path, validate_sha256
from shoal.scan.fsprobe import folder_traits
from shoal.scan.scanner import READ_RETRY_SECONDS, disk_kind, sha256_file
from shoal.errors import FileProblem, HubError, PathRefused
from shoal.localstore import Store
from shoal.model import CONTENT_KINDS, KIND_DIR, KIND_EXEC, KIND_FILE, KIND_SYMLINK, Change, ErrorKind, FileState
from shoal.sync.folder_io import FolderWriter
from shoal.sync.transfer import Downloader, OnBytesMoved

log = logging.getLogger("shoal.apply")
WRITE_RETRY_SECONDS = 30
WRITE_RETRY_CAP = 3600
WRITE_THREADS = 4
SMALL_RUN = 64  # small files written per task of the write threads


@dataclass
class ApplyStats:
    written: int = 0
    deleted: int = 0
    bytes: int = 0
    local_copies: int = 0
    refused: int = 0
    failed: int = 0
    concurrent: int = 0
    conflicts_seen: list[str] = field(default_factory=list)


def _same_stat(a: os.stat_result | None, b: os.stat_result | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return (a.st_size, a.st_mtime_ns, a.st_ino, statmod.S_IFMT(a.st_mode)) == (
        b.st_size, b.st_mtime_ns, b.st_ino, statmod.S_IFMT(b.st_mode))


def _same_kind(disk: str, indexed: str, modes: bool) -> bool:
    """Without modes, a file on disk is whichever of file/exec the index says."""
    return disk == indexed or (not modes and disk in CONTENT_KINDS and indexed in CONTENT_KINDS)


def _matches_index(st: os.stat_result, idx: FileState, modes: bool) -> bool:
    return (_same_kind(disk_kind(st, modes), idx.kind, modes) and st.st_size == idx.size
            and st.st_mtime_ns == idx.mtime_ns and st.st_ino == idx.inode)


class Applier:
    """Applies remote changes to one folder. Use as a context manager (it holds dir fds)."""

    def __init__(self, store: Store, folder_id: str, root: Path, downloader_factory: Callable[[FolderWriter], Downloader],
                 roots: dict[str, Path], *, now: Callable[[], float], progress: OnBytesMoved | None = None):
        self.store = store
        self.folder_id = folder_id
        self.root = Path(root)
        self.writer = FolderWriter(self.root)
        self.downloader = downloader_factory(self.writer)
        self._pool = ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="shoal-write")
        self.roots = roots  # folder id -> root, to find local copies of a content
        self.now = now
        self.progress = progress
        self.stats = ApplyStats()
        self.traits = folder_traits(store, folder_id, self.root)
        self._names: dict[str, dict[str, str]] = {}  # a case-folding folder's directories as listed
        self._planned: dict[str, str] = {}  # casefold key -> path written by this page
        self._copies: set[str] = set()  # collision copies: indexed by the next scan, which pushes them
        self._dir_deletions: list[tuple[Change, FileState | None]] = []  # done after the page's files

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.writer.close()

    def __enter__(self) -> Applier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- bookkeeping ----------------------------------------------------------------

    def _error(self, path: str, kind: ErrorKind, message: str, retry_after: int | None) -> None:
        """Record an error of `path`, retried after `retry_after` seconds (None: by no timer)."""
        now = int(self.now())
        self.store.record_error(self.folder_id, path, kind, message, now,
                                None if retry_after is None else now + retry_after)
        log.warning("%s: %s: %s", self.folder_id, path, message)

    def _failed(self, path: str, kind: ErrorKind, message: str) -> None:
        """A write (or fetch) of `path` failed: retried from the head, each failure of the same
        path waiting longer (from WRITE_RETRY_SECONDS up to WRITE_RETRY_CAP)."""
        self.stats.failed += 1
        attempt = self.store.error_retries(self.folder_id, path, kind)
        self._error(path, kind, message, int(backoff_delay(attempt, base=WRITE_RETRY_SECONDS,
                                                           cap=WRITE_RETRY_CAP, rand=random.random())))

    def _refuse(self, path: str, reason: str) -> None:
        self.stats.refused += 1
        # A refused path can never be written: it is reported, not retried.
        self._error(path if isinstance(path, str) else repr(path), ErrorKind.REFUSED, reason, None)

    def _index_local(self, path: str, st: os.stat_result, old: FileState | None) -> FileState | None:
        """The local file differs from the index: index it as a local change (it is concurrent)."""
        os_path = os.path.join(self.root, path)
        try:
            if statmod.S_ISLNK(st.st_mode):
                target = os.readlink(os_path)
                sha = hashlib.sha256(os.fsencode(target)).hexdigest()
                kind = KIND_SYMLINK
            else:
                sha, _ = sha256_file(os_path)
                target, kind = None, disk_kind(st, self.traits.modes)
        except OSError as e:
            self._error(path, ErrorKind.READ, f"cannot read: {e.strerror}", READ_RETRY_SECONDS)
            return None
        fs = FileState(self.folder_id, path, kind, st.st_size, st.st_mtime_ns, st.st_ino, sha, False, target,
                       old.version if old else None)
        return fs

    # -- the page -------------------------------------------------------------------

    def apply(self, changes: list[Change]) -> ApplyStats:
        """Apply one page of remote changes (latest per path). Never raises for one file;
        raises HubUnreachable if the hub goes away while contents are fetched."""
        writes: list[tuple[Change, os.stat_result | None]] = []
        self._pending = self.store.pending_paths(self.folder_id)
        self._names.clear()
        self._planned.clear()
        for ch in changes:
            try:
                item = self._decide(ch)
            except PathRefused as e:
                self._refuse(ch.path, str(e))
                continue
            except OSError as e:
                self._failed(ch.path, ErrorKind.WRITE, f"cannot apply: {e.strerror}")
                continue
            except FileProblem as e:
                self._failed(ch.path, e.kind, str(e))
                continue
            if item is not None:
                writes.append(item)
        if writes:
            self._write_all(writes)
        self._remove_dirs()
        return self.stats

    def _decide(self, ch: Change) -> tuple[Change, os.stat_result | None] | None:
        validate_remote_path(ch.path)
        validate_sha256(ch.sha256)  # a hash from the hub is never trusted to be one
        if ch.kind not in (KIND_FILE, KIND_EXEC, KIND_SYMLINK, KIND_DIR):
            raise PathRefused(f"path refused: unknown kind {ch.kind!r}")
        if ch.kind == KIND_SYMLINK and (not ch.target or "\0" in ch.target):
            raise PathRefused("path refused: symlink without a valid target")
        idx = self.store.get_file(self.folder_id, ch.path)
        if idx is not None and idx.version is not None and ch.version is not None and idx.version >= ch.version:
            return None
        if ch.path in self._pending:
            self.stats.concurrent += 1
            return None  # a local change waits to be pushed: the hub decides the conflict
        if self.traits.folds_case:
            occupant = self._occupant(ch.path)
            if occupant is not None:
                return self._collision(ch, occupant, idx)
        if ch.kind == KIND_DIR:
            self._apply_dir(ch, idx)
            return None
        st = self.writer.lstat(ch.path)
        if st is not None and statmod.S_ISDIR(st.st_mode):
            if ch.deleted:
                self._tombstone(ch, idx)
                return None
            if idx is None or idx.deleted or idx.kind != KIND_DIR:
                raise FileProblem(f"cannot write {ch.path}: a directory is in the way")
            try:  # a directory replaced by a file elsewhere: it goes if it is empty here
                self.writer.remove_dir(ch.path)
            except OSError as e:
                raise FileProblem(f"cannot write {ch.path}: a directory that is not empty here is in the way",
                                  kind=ErrorKind.WRITE) from e
            st = None
        if st is not None and (idx is None or idx.deleted or not _matches_index(st, idx, self.traits.modes)):
            local = self._index_local(ch.path, st, idx)
            if local is None:
                return None
            if idx is not None and not idx.deleted and local.sha256 == idx.sha256:
                self.store.put_file(local)  # only metadata moved: still the indexed content
                idx = local
            elif not ch.deleted and local.sha256 == ch.sha256:
                self.store.put_file(local._replace(version=ch.version))
                return None  # already has the remote content
            else:
                # A local edit the index had not seen: index it; it is concurrent with `ch`.
                self.store.record_change(local, now=int(self.now()))
                self.stats.concurrent += 1
                return None
        if ch.deleted:
            if st is not None:
                self.writer.to_trash(ch.path, self.now())
                self.stats.deleted += 1
            self._tombstone(ch, idx)
            return None
        if st is not None and idx is not None and idx.sha256 == ch.sha256 and idx.kind == ch.kind:
            self.store.set_version(self.folder_id, ch.path, ch.version)
            return None
        if st is not None and idx is not None and idx.sha256 == ch.sha256 and {idx.kind, ch.kind} <= CONTENT_KINDS:
            # Only the exec bit changed: set it in place (a folder without modes keeps it in the index).
            if self.traits.modes:
                st = self.writer.set_exec(ch.path, ch.kind == KIND_EXEC)
            self.store.put_file(idx._replace(kind=ch.kind, version=ch.version, inode=st.st_ino,
                                             size=st.st_size, mtime_ns=st.st_mtime_ns))
            return None
        if self.traits.folds_case:
            self._planned[casefold_key(ch.path)] = ch.path
        return ch, st

    # -- directories ---------------------------------------------------------------

    def _apply_dir(self, ch: Change, idx: FileState | None) -> None:
        """Make a directory (and its parents), or queue its removal for after the page's files."""
        if ch.deleted:
            self._dir_deletions.append((ch, idx))
            return
        st = self.writer.lstat(ch.path)
        if st is not None and not statmod.S_ISDIR(st.st_mode):
            if idx is None or idx.deleted or idx.kind == KIND_DIR or not _matches_index(st, idx, self.traits.modes):
                raise FileProblem(f"cannot make directory {ch.path}: a file is in the way", path=ch.path,
                                  kind=ErrorKind.WRITE)
            self.writer.to_trash(ch.path, self.now())  # the file the directory replaced elsewhere
            st = None
        if st is None:
            self.writer.dir_fd(ch.path, create=True)
            st = self.writer.lstat(ch.path)
        self.store.put_file(FileState(self.folder_id, ch.path, KIND_DIR, 0, st.st_mtime_ns, st.st_ino, ch.sha256,
                                      False, None, ch.version))
        self.store.clear_error(self.folder_id, ch.path)
        self.stats.written += 1

    def _remove_dirs(self) -> None:
        """Remove the directories deleted elsewhere, deepest first, each only if it is empty
        here; one that still holds something (a file made here meanwhile, an ignored file) is
        kept and reported, and the next scan offers it to the other devices again."""
        queued, self._dir_deletions = self._dir_deletions, []
        for ch, idx in sorted(queued, key=lambda q: q[0].path, reverse=True):
            try:
                if self.writer.remove_dir(ch.path):
                    self.stats.deleted += 1
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    self._failed(ch.path, ErrorKind.WRITE, f"cannot remove directory: {e.strerror}")
                    continue
                self._error(ch.path, ErrorKind.REFUSED,
                            "directory deleted on another device, kept here: it is not empty", None)
            except FileProblem:
                pass  # not a directory here (a file took its place): nothing of it to remove
            except PathRefused as e:
                self._refuse(ch.path, str(e))
                continue
            self._tombstone(ch, idx)

    # -- case-folding folders -------------------------------------------------------

    def _occupant(self, path: str) -> str | None:
        """On a case-folding folder: the other path that holds `path`'s place, on disk or among
        this page's writes (`A.txt` when `a.txt` is asked for; `docs/new.txt` when `Docs/new.txt`
        is, where a directory `docs` is), or None if `path` is free or is itself what is there."""
        planned = self._planned.get(casefold_key(path))
        if planned is not None and planned != path:
            return planned
        parts = path.split("/")
        real: list[str] = []
        for i, part in enumerate(parts):
            reldir = "/".join(real)
            names = self._names.get(reldir)
            if names is None:
                names = self._names[reldir] = {casefold_key(n): n for n in self.writer.names(reldir)}
            found = names.get(casefold_key(part))
            if found is None:  # from here on nothing is on disk: it would land under `real`
                real.extend(parts[i:])
                break
            real.append(unicodedata.normalize("NFC", found))
        occupant = "/".join(real)
        return None if occupant == path else occupant

    def _collision(self, ch: Change, occupant: str, idx: FileState | None) -> tuple[Change, None] | None:
        """`ch.path` folds to `occupant`, another path this device has. A deletion has nothing of
        its own to remove; a rename of the occupant that only changes case is done in place;
        anything else is written beside it as a conflict copy, so neither version is lost."""
        if ch.deleted or ch.kind == KIND_DIR:
            self._tombstone(ch, idx)  # (a directory of another case is this directory here)
            return None
        occ = self.store.get_file(self.folder_id, occupant)
        st = self.writer.lstat(occupant)
        if (ch.moved_from == occupant and occ is not None and not occ.deleted and st is not None
                and occ.sha256 == ch.sha256 and occ.kind == ch.kind
                and occupant.rpartition("/")[0] == ch.path.rpartition("/")[0]
                and _matches_index(st, occ, self.traits.modes)):
            self.writer.rename_case(occupant, ch.path)
            new_st = self.writer.lstat(ch.path)
            self.store.put_file(occ._replace(path=ch.path, version=ch.version, inode=new_st.st_ino,
                                             mtime_ns=new_st.st_mtime_ns))
            self.store.put_file(occ._replace(deleted=True, size=0, inode=0))
            reldir = occupant.rpartition("/")[0]
            self._names.setdefault(reldir, {})[casefold_key(ch.path)] = ch.path.rpartition("/")[2]
            self.stats.written += 1
            return None
        parent = occupant.rpartition("/")[0]  # as it is on disk
        name = ch.path.rpartition("/")[2]
        beside = f"{parent}/{name}" if parent else name
        copy = unique_path(conflict_name(beside, ch.mtime_ns, ch.device_name or "remote"),
                           lambda p: self._occupant(p) is not None or self.writer.lstat(p) is not None)
        log.warning("%s: %s and %s are one name on this case-insensitive folder: keeping %s as %s",
                    self.folder_id, ch.path, occupant, ch.path, copy)
        self.store.record_conflict(self.folder_id, ch.path, copy, None, ch.device_name, int(self.now()), ch.version)
        self._copies.add(copy)
        self._planned[casefold_key(copy)] = copy
        return dataclasses.replace(ch, path=copy, version=None, moved_from=None, conflict_of=None), None

    def _tombstone(self, ch: Change, idx: FileState | None) -> None:
        self.store.put_file(FileState(self.folder_id, ch.path, ch.kind, 0, ch.mtime_ns, 0, ch.sha256, True,
                                      ch.target, ch.version))

    def _local_copy(self, ch: Change, candidates: list[FileState]) -> str | None:
        """Materialise a content from a local file that has it (a rename, a duplicate)."""
        for cand in candidates:
            root = self.roots.get(cand.folder_id)
            if root is None:
                continue
            src = os.path.join(root, cand.path)
            try:
                sfd = os.open(src, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            except OSError:
                continue
            name, dfd = self.writer.new_temp()  # a new, empty file: no truncate (see Downloader.fetch)
            try:
                h = hashlib.sha256()
                while True:
                    chunk = os.read(sfd, 1 << 20)
                    if not chunk:
                        break
                    h.update(chunk)
                    os.write(dfd, chunk)
            except OSError:
                os.close(dfd)
                self.writer.discard_temp(name)
                continue
            finally:
                os.close(sfd)
            os.close(dfd)
            if h.hexdigest() == ch.sha256:
                self.stats.local_copies += 1
                return name
            self.writer.discard_temp(name)
        return None

    def _write_smalls(self, changes: list[Change]) -> dict[str, str | Exception]:
        """Write fetched small contents into temp files (in a worker thread): path -> temp name,
        or the error that file met (raised again for that file alone)."""
        out: dict[str, str | Exception] = {}
        for ch in changes:
            try:
                out[ch.path] = self.downloader.write_small(ch.sha256, ch.mtime_ns)
            except (OSError, FileProblem) as e:
                out[ch.path] = e
        return out

    def _write_all(self, writes: list[tuple[Change, os.stat_result | None]]) -> None:
        local = self.store.find_by_shas(ch.sha256 for ch, _ in writes if ch.kind in CONTENT_KINDS)
        need_hub = [sha for sha, found in local.items() if not found]
        if need_hub:
            self.downloader.prefetch(need_hub)
        ready: list[tuple[Change, os.stat_result | None, str]] = []
        fetched: dict[str, str] = {}  # sha256 -> temp name, for contents repeated in the page
        # Small contents already fetched are written by a few threads, a run of files per task:
        # creating many files is syscall-bound, and the syscalls release the GIL.
        runs = [ch for ch, _ in writes
                if ch.kind in CONTENT_KINDS and not local[ch.sha256] and self.downloader.has_small(ch.sha256)]
        small = {}
        for i in range(0, len(runs), SMALL_RUN):
            task = self._pool.submit(self._write_smalls, runs[i:i + SMALL_RUN])
            small.update((ch.path, task) for ch in runs[i:i + SMALL_RUN])
        for ch, st in writes:
            try:
                if ch.path in small:
                    tmp = small[ch.path].result()[ch.path]
                    if isinstance(tmp, Exception):
                        raise tmp
                    if self.progress:
                        self.progress(ch.size)
                elif ch.kind == KIND_SYMLINK:
                    try:
                        tmp = self.writer.temp_symlink(ch.target or "")
                    except OSError as e:
                        if e.errno not in (errno.ENOSYS, errno.EPERM, errno.EOPNOTSUPP):
                            raise
                        # exFAT/FAT (SD cards, Android's shared storage): it never can; say so once.
                        self._refuse(ch.path, "this folder's filesystem cannot hold symlinks")
                        continue
                else:
                    if ch.sha256 in fetched:
                        tmp = self.writer.copy_temp(fetched[ch.sha256])
                    else:
                        # The version being replaced lends the blocks it shares with the new one.
                        base = ch.path if st is not None and statmod.S_ISREG(st.st_mode) else None
                        tmp = (self._local_copy(ch, local[ch.sha256])
                               or self.downloader.fetch(ch.sha256, ch.size, base))
                        fetched[ch.sha256] = tmp
                    self.writer.set_temp_mtime(tmp, ch.mtime_ns)
                if ch.kind == KIND_EXEC and self.traits.modes:
                    self.writer.set_temp_exec(tmp, True)
            except PathRefused as e:
                self._refuse(ch.path, str(e))
                continue
            except FileProblem as e:
                if e.kind is ErrorKind.REFUSED:  # the hub's data for it is malformed
                    self._refuse(ch.path, str(e))
                    continue
                self._failed(ch.path, e.kind, str(e))
                continue
            except OSError as e:
                self._failed(ch.path, ErrorKind.WRITE, f"cannot write: {e.strerror}")
                continue
            except HubError:
                raise
            ready.append((ch, st, tmp))
        if not ready:
            return
        self.writer.flush_all()  # every temp file durable before any rename
        installed: list[tuple[Change, os.stat_result]] = []
        for ch, st, tmp in ready:
            try:
                now_st = self.writer.lstat(ch.path)
                if not _same_stat(now_st, st):
                    # Edited locally since the check: leave it; the next scan indexes the edit.
                    self.writer.discard_temp(tmp)
                    self.stats.concurrent += 1
                    continue
                if now_st is not None:
                    self.writer.to_trash(ch.path, self.now())
                new_st = self.writer.install(tmp, ch.path)
            except PathRefused as e:
                self.writer.discard_temp(tmp)
                self._refuse(ch.path, str(e))
                continue
            except (OSError, FileProblem) as e:
                self.writer.discard_temp(tmp)
                msg = e.strerror if isinstance(e, OSError) else str(e)
                self._failed(ch.path, ErrorKind.WRITE, f"cannot write: {msg}")
                continue
            self.downloader.drop_cached(ch.sha256)
            installed.append((ch, new_st))
        self.writer.fsync_touched_dirs()
        # Conflict copies are left to the next scan to index: they sync like any file.
        indexed = [(ch, st) for ch, st in installed if ch.path not in self._copies]
        with self.store.transaction():
            self.store.put_files(FileState(self.folder_id, ch.path, ch.kind, st.st_size, st.st_mtime_ns, st.st_ino,
                                           ch.sha256, False, ch.target, ch.version) for ch, st in indexed)
            self.store.clear_errors(self.folder_id, (ch.path for ch, _ in indexed))
            for ch, _ in indexed:
                self.stats.bytes += ch.size
                if ch.conflict_of:
                    self.stats.conflicts_seen.append(ch.path)
                    self.store.record_conflict(self.folder_id, ch.conflict_of, ch.path, None,
                                               ch.device_name, int(self.now()), ch.version)
        self.stats.written += len(installed)
