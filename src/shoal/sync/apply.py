"""Applying pulled changes to one folder: validate, check the local file, fetch, write safely.

Per page of changes: every remote path is validated first (a refused one is recorded and
skipped, the rest go on). The local file is compared with the index; a local edit found
is indexed as a local change and wins the right to be treated as concurrent. Contents are
materialised into temp files (from a local copy of the same content when there is one,
else from the hub), made durable with one syncfs, re-checked against the disk, and renamed
into place; the replaced file goes to the trash; then the index records the new state.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import stat as statmod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from shoal.core.backoff import backoff_delay
from shoal.core.paths import validate_remote_path, validate_sha256
from shoal.scan.scanner import READ_RETRY_SECONDS, sha256_file
from shoal.errors import FileProblem, HubError, PathRefused
from shoal.localstore import Store
from shoal.model import KIND_FILE, KIND_SYMLINK, Change, ErrorKind, FileState
from shoal.sync.folder_io import FolderWriter
from shoal.sync.transfer import Downloader, OnBytesMoved

log = logging.getLogger("shoal.apply")
WRITE_RETRY_SECONDS = 30
WRITE_RETRY_CAP = 3600
WRITE_THREADS = 4


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


def _matches_index(st: os.stat_result, idx: FileState) -> bool:
    kind = KIND_SYMLINK if statmod.S_ISLNK(st.st_mode) else KIND_FILE
    return (kind == idx.kind and st.st_size == idx.size and st.st_mtime_ns == idx.mtime_ns
            and st.st_ino == idx.inode)


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
                target, kind = None, KIND_FILE
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
        for ch in changes:
            try:
                item = self._decide(ch)
            except PathRefused as e:
                self._refuse(ch.path, str(e))
                continue
            except OSError as e:
                self._failed(ch.path, ErrorKind.WRITE, f"cannot apply: {e.strerror}")
                continue
            if item is not None:
                writes.append(item)
        if writes:
            self._write_all(writes)
        return self.stats

    def _decide(self, ch: Change) -> tuple[Change, os.stat_result | None] | None:
        validate_remote_path(ch.path)
        validate_sha256(ch.sha256)  # a hash from the hub is never trusted to be one
        if ch.kind not in (KIND_FILE, KIND_SYMLINK):
            raise PathRefused(f"path refused: unknown kind {ch.kind!r}")
        if ch.kind == KIND_SYMLINK and (not ch.target or "\0" in ch.target):
            raise PathRefused("path refused: symlink without a valid target")
        idx = self.store.get_file(self.folder_id, ch.path)
        if idx is not None and idx.version is not None and ch.version is not None and idx.version >= ch.version:
            return None
        if ch.path in self._pending:
            self.stats.concurrent += 1
            return None  # a local change waits to be pushed: the hub decides the conflict
        st = self.writer.lstat(ch.path)
        if st is not None and statmod.S_ISDIR(st.st_mode):
            if ch.deleted:
                self._tombstone(ch, idx)
                return None
            raise FileProblem(f"cannot write {ch.path}: a directory is in the way")
        if st is not None and (idx is None or idx.deleted or not _matches_index(st, idx)):
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
        return ch, st

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

    def _write_all(self, writes: list[tuple[Change, os.stat_result | None]]) -> None:
        local = {ch.sha256: self.store.find_by_sha(ch.sha256) for ch, _ in writes if ch.kind == KIND_FILE}
        need_hub = [sha for sha, found in local.items() if not found]
        if need_hub:
            self.downloader.prefetch(need_hub)
        ready: list[tuple[Change, os.stat_result | None, str]] = []
        fetched: dict[str, str] = {}  # sha256 -> temp name, for contents repeated in the page
        # Small contents already fetched are written by a few threads: creating many files is
        # syscall-bound, and the syscalls release the GIL.
        small = {ch.path: self._pool.submit(self.downloader.write_small, ch.sha256, ch.mtime_ns)
                 for ch, _ in writes
                 if ch.kind == KIND_FILE and not local[ch.sha256] and self.downloader.has_small(ch.sha256)}
        for ch, st in writes:
            try:
                if ch.path in small:
                    tmp = small[ch.path].result()
                    if self.progress:
                        self.progress(ch.size)
                elif ch.kind == KIND_SYMLINK:
                    tmp = self.writer.temp_symlink(ch.target or "")
                else:
                    if ch.sha256 in fetched:
                        tmp = self.writer.copy_temp(fetched[ch.sha256])
                    else:
                        tmp = (self._local_copy(ch, local[ch.sha256])
                               or self.downloader.fetch(ch.sha256, ch.size))
                        fetched[ch.sha256] = tmp
                    self.writer.set_temp_mtime(tmp, ch.mtime_ns)
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
        with self.store.transaction():
            for ch, st in installed:
                self.store.put_file(FileState(self.folder_id, ch.path, ch.kind, st.st_size, st.st_mtime_ns,
                                              st.st_ino, ch.sha256, False, ch.target, ch.version))
                self.store.clear_error(self.folder_id, ch.path)
                self.stats.written += 1
                self.stats.bytes += ch.size
                if ch.conflict_of:
                    self.stats.conflicts_seen.append(ch.path)
                    self.store.record_conflict(self.folder_id, ch.conflict_of, ch.path, None,
                                               ch.device_name, int(self.now()), ch.version)
