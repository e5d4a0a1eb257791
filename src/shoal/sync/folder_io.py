"""Writing into a synced folder without ever following a symlink out of it.

Every directory on the way to a path is opened with O_NOFOLLOW relative to its parent's
descriptor, and every rename, unlink and mkdir is done relative to those descriptors, so a
symlink swapped into a parent between check and write cannot redirect the write
(the class of rsync CVE-2024-12087 and Syncthing CVE-2017-1000420).
Temp files live in `<folder>/.shoal/tmp`; replaced and deleted files go to `<folder>/.shoal/trash`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import stat
import uuid
from pathlib import Path

from shoal.core.conflicts import unique_path
from shoal.core.paths import TMP_DIR, TRASH_DIR, trash_relpath, trash_stamp_epoch
from shoal.errors import FileProblem, PathRefused

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_libc = None


def _syncfs(fd: int) -> None:
    """Flush every dirty page of the filesystem holding `fd` (one call instead of many fsyncs)."""
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        _libc = ctypes.CDLL(name, use_errno=True) if name else False
    if _libc and hasattr(_libc, "syncfs"):
        if _libc.syncfs(fd) == 0:
            return
    os.sync()


class FolderWriter:
    """Descriptor-relative file operations inside one folder root. Not thread-safe."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        self._dirs: dict[str, int] = {"": self.root_fd}
        self._touched: set[str] = set()
        self.tmp_fd = self.dir_fd(TMP_DIR, create=True)
        self.trash_root = TRASH_DIR

    def close(self) -> None:
        for fd in self._dirs.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._dirs.clear()

    def __enter__(self) -> FolderWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- directories --------------------------------------------------------------

    def dir_fd(self, reldir: str, *, create: bool) -> int:
        """Descriptor of a directory inside the folder, each component opened with O_NOFOLLOW.

        Raises PathRefused if a component is a symlink or not a directory, FileNotFoundError if
        it is missing and `create` is false, OSError for other failures.
        """
        if reldir in self._dirs:
            return self._dirs[reldir]
        parent, _, name = reldir.rpartition("/")
        pfd = self.dir_fd(parent, create=create)
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
        except FileNotFoundError:
            if not create:
                raise
            try:
                os.mkdir(name, 0o755, dir_fd=pfd)
            except FileExistsError:
                pass
            self._touched.add(parent)
            fd = self._open_dir_checked(name, pfd, reldir)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise PathRefused(f"path refused: {reldir} is a symlink or not a directory",
                                  path=reldir) from e
            raise
        self._dirs[reldir] = fd
        return fd

    @staticmethod
    def _open_dir_checked(name: str, pfd: int, reldir: str) -> int:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=pfd)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise PathRefused(f"path refused: {reldir} is a symlink or not a directory",
                                  path=reldir) from e
            raise

    def parent(self, relpath: str, *, create: bool) -> tuple[int, str]:
        reldir, _, name = relpath.rpartition("/")
        return self.dir_fd(reldir, create=create), name

    # -- files --------------------------------------------------------------------

    def lstat(self, relpath: str) -> os.stat_result | None:
        """lstat of a path inside the folder; None if it (or a parent) does not exist."""
        try:
            pfd, name = self.parent(relpath, create=False)
            return os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def open_read(self, relpath: str) -> int:
        """A read descriptor of a regular file in the folder (never through a symlink)."""
        pfd, name = self.parent(relpath, create=False)
        return os.open(name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0),
                       dir_fd=pfd)

    def new_temp(self, name: str | None = None) -> tuple[str, int]:
        """Create (or open for resuming, when `name` is given) a temp file in .shoal/tmp."""
        name = name or f"{uuid.uuid4().hex}.tmp"
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        return name, os.open(name, flags, 0o644, dir_fd=self.tmp_fd)

    def temp_symlink(self, target: str) -> str:
        name = f"{uuid.uuid4().hex}.lnk"
        os.symlink(target, name, dir_fd=self.tmp_fd)
        return name

    def copy_temp(self, name: str) -> str:
        """A second temp file with the same bytes (two paths of one page share a content)."""
        src = os.open(name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0), dir_fd=self.tmp_fd)
        new, dst = self.new_temp()
        try:
            while True:
                chunk = os.read(src, 1 << 20)
                if not chunk:
                    break
                os.write(dst, chunk)
            st = os.fstat(src)
            os.utime(dst, ns=(st.st_mtime_ns, st.st_mtime_ns))
        finally:
            os.close(src)
            os.close(dst)
        return new

    def temp_size(self, name: str) -> int:
        try:
            return os.stat(name, dir_fd=self.tmp_fd, follow_symlinks=False).st_size
        except FileNotFoundError:
            return 0

    def discard_temp(self, name: str) -> None:
        try:
            os.unlink(name, dir_fd=self.tmp_fd)
        except FileNotFoundError:
            pass

    def set_temp_mtime(self, name: str, mtime_ns: int) -> None:
        os.utime(name, ns=(mtime_ns, mtime_ns), dir_fd=self.tmp_fd, follow_symlinks=False)

    def set_temp_exec(self, name: str, executable: bool) -> None:
        """Set or clear the exec bits of a temp file (where its read bits are), nothing else."""
        st = os.stat(name, dir_fd=self.tmp_fd, follow_symlinks=False)
        os.chmod(name, _with_exec(st.st_mode, executable), dir_fd=self.tmp_fd)

    def set_exec(self, relpath: str, executable: bool) -> os.stat_result:
        """Set or clear the exec bits of a file of the folder in place; returns its new stat."""
        pfd, name = self.parent(relpath, create=False)
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), dir_fd=pfd)
        try:
            os.fchmod(fd, _with_exec(os.fstat(fd).st_mode, executable))
            return os.fstat(fd)
        finally:
            os.close(fd)

    def names(self, reldir: str) -> list[str]:
        """The entry names of a directory of the folder as they are on disk ([] if it is missing)."""
        try:
            return os.listdir(self.dir_fd(reldir, create=False))
        except (FileNotFoundError, NotADirectoryError, PathRefused):
            return []

    def remove_dir(self, relpath: str) -> bool:
        """Remove an empty directory of the folder (never through a symlink); False if it is
        not there. Raises OSError (ENOTEMPTY when it holds something), FileProblem if it is
        not a directory."""
        try:
            pfd, name = self.parent(relpath, create=False)
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(st.st_mode):
            raise FileProblem(f"cannot remove directory {relpath}: it is not a directory", path=relpath)
        fd = self._dirs.pop(relpath, None)
        if fd is not None:
            os.close(fd)
        os.rmdir(name, dir_fd=pfd)
        self._touched.add(relpath.rpartition("/")[0])
        return True

    def rename_case(self, src: str, dst: str) -> None:
        """Rename a file to a name that differs only in case, on a filesystem that folds case
        (where `dst` already "exists": it is `src`)."""
        spfd, sname = self.parent(src, create=False)
        dpfd, dname = self.parent(dst, create=False)
        if spfd != dpfd or dname in os.listdir(dpfd):
            raise FileProblem(f"cannot rename {src}: {dst} is another file", path=dst)
        os.rename(sname, dname, src_dir_fd=spfd, dst_dir_fd=dpfd)
        self._touched.update({src.rpartition("/")[0], dst.rpartition("/")[0]})

    def flush_all(self) -> None:
        """Make every temp file written so far durable, with one syncfs of the filesystem."""
        _syncfs(self.tmp_fd)

    def install(self, temp_name: str, relpath: str) -> os.stat_result:
        """Rename a finished temp file into place (atomically replacing what is there)."""
        pfd, name = self.parent(relpath, create=True)
        try:
            os.replace(temp_name, name, src_dir_fd=self.tmp_fd, dst_dir_fd=pfd)
        except IsADirectoryError as e:
            raise FileProblem(f"cannot write {relpath}: a directory is in the way", path=relpath) from e
        self._touched.add(relpath.rpartition("/")[0])
        return os.stat(name, dir_fd=pfd, follow_symlinks=False)

    def to_trash(self, relpath: str, now: float) -> str | None:
        """Move a file of the folder into .shoal/trash; returns its trash path (None if gone)."""
        pfd, name = self.parent(relpath, create=False)
        st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            raise FileProblem(f"cannot replace {relpath}: it is a directory", path=relpath)
        # Two versions replaced within one second must not share a name: the older would be lost.
        dest = unique_path(f"{self.trash_root}/{trash_relpath(relpath, now)}",
                           lambda p: self.lstat(p) is not None)
        dpfd, dname = self.parent(dest, create=True)
        os.rename(name, dname, src_dir_fd=pfd, dst_dir_fd=dpfd)
        self._touched.add(relpath.rpartition("/")[0])
        return dest

    def rename(self, src: str, dst: str) -> None:
        """Rename within the folder (for conflict copies); refuses to overwrite."""
        spfd, sname = self.parent(src, create=False)
        dpfd, dname = self.parent(dst, create=True)
        try:
            os.stat(dname, dir_fd=dpfd, follow_symlinks=False)
            raise FileProblem(f"cannot rename {src}: {dst} exists", path=dst)
        except FileNotFoundError:
            pass
        os.rename(sname, dname, src_dir_fd=spfd, dst_dir_fd=dpfd)
        self._touched.update({src.rpartition("/")[0], dst.rpartition("/")[0]})

    def fsync_touched_dirs(self) -> None:
        """fsync each directory whose entries changed, once."""
        for reldir in sorted(self._touched):
            fd = self._dirs.get(reldir)
            if fd is not None:
                os.fsync(fd)
        self._touched.clear()


def _with_exec(mode: int, executable: bool) -> int:
    """`mode`'s permission bits with an exec bit wherever a read bit is (or with none)."""
    mode = stat.S_IMODE(mode) & ~0o111
    return mode | ((mode & 0o444) >> 2) if executable else mode


def purge_trash(root: Path, older_than_epoch: float) -> int:
    """Delete trashed files whose stamp is older than the cutoff; returns how many went."""
    trash = Path(root) / TRASH_DIR
    removed = 0
    if not trash.is_dir():
        return 0
    for dirpath, _dirnames, filenames in os.walk(trash):
        for fn in filenames:
            when = trash_stamp_epoch(fn)
            if when is not None and when < older_than_epoch:
                try:
                    os.unlink(os.path.join(dirpath, fn))
                    removed += 1
                except OSError:
                    pass
    return removed
