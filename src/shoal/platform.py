"""One owner for each platform fact: Termux, Android shared storage, Unix socket paths, and
writing a file atomically.

Layer 0: imports nothing of shoal, so config, the hub, the daemon and the operations can all
ask the same question and get the same answer. The environment is passed in where a test
needs to pin it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

#: Where Android keeps each app's private data.
ANDROID_APP_DATA = "/data/data"
#: Termux's app data dir; its PREFIX (`files/usr`) and HOME (`files/home`) live under it.
TERMUX_PREFIX = ANDROID_APP_DATA + "/com.termux"
TERMUX_USR = TERMUX_PREFIX + "/files/usr"
#: Android shared storage ("internal storage", SD cards) and its usual aliases. Inotify events
#: may not arrive there (FUSE), and symlinks and hard links are refused.
ANDROID_SHARED_STORAGE = ("/storage", "/sdcard", "/mnt/sdcard")

#: A Unix socket path must fit sun_path: 108 bytes on Linux, 104 on macOS. Keep clear of both.
SOCKET_PATH_MAX = 100


def under(path: str, prefix: str) -> bool:
    """Whether `path` is `prefix` or inside it (component-wise). Raises nothing."""
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def is_termux(env: Mapping[str, str] = os.environ, sys_prefix: str | None = None) -> bool:
    """True when running inside Termux on Android: TERMUX_VERSION is set, or PREFIX, HOME or
    Python's prefix (`sys_prefix`, default sys.prefix) is under Termux's app dir.
    Raises nothing."""
    if env.get("TERMUX_VERSION"):
        return True
    places = (sys.prefix if sys_prefix is None else sys_prefix, env.get("HOME", ""), env.get("PREFIX", ""))
    return any(under(value, TERMUX_PREFIX) for value in places)


def is_android_app_prefix(prefix: str) -> bool:
    """Whether a PREFIX is an Android app's (Termux's `.../files/usr`). Raises nothing."""
    return under(prefix, ANDROID_APP_DATA) and prefix.rstrip("/") != ANDROID_APP_DATA


def is_android_shared_storage(path: str, home: str | None = None) -> bool:
    """Whether `path` is on Android shared storage: /storage/..., /sdcard, /mnt/sdcard, or
    `<home>/storage/...` (the links termux-setup-storage makes in Termux's home).
    Raises nothing."""
    path = os.path.normpath(path) if path else path
    prefixes = list(ANDROID_SHARED_STORAGE)
    if home:
        prefixes.append(os.path.join(os.path.normpath(home), "storage"))
    return any(under(path, p) for p in prefixes)


def socket_path_fits(path: Path | str) -> bool:
    """Whether a Unix socket can be bound at `path` on every platform shoal runs on."""
    return len(os.fsencode(str(path))) < SOCKET_PATH_MAX


def short_temp_path(name: str) -> Path:
    """`name` in the system temp dir: where a socket goes when its natural path is too long.
    The temp dir is shared with other users: the caller names it after what it serves and
    checks whatever it finds there. Raises nothing."""
    return Path(tempfile.gettempdir()) / name


def write_file_atomic(path: Path, data: str | bytes, *, mode: int = 0o600, replace: bool = True,
                      owner: tuple[int, int] | None = None) -> None:
    """Write `data` (str: UTF-8, newlines as given) to `path` so that a reader sees the old
    file or the new one, never a part: a temp file beside it (mode `mode`, owned by `owner`
    (uid, gid) when given), fsync, rename into place, fsync the directory.

    With `replace` false an existing file is never replaced (a hard link puts the temp file in
    place; where links are refused, as on Android storage or FAT, it is checked first) and
    FileExistsError is raised. Raises OSError; the temp file never stays behind.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            os.fchmod(fd, mode)
            if owner is not None:
                os.fchown(fd, *owner)
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(temp_name, path)
        else:
            try:
                os.link(temp_name, path)  # a link never replaces: a file written meanwhile is kept
            except FileExistsError:
                raise
            except OSError:  # some filesystems (Android storage, FAT) refuse hard links
                if path.exists() or path.is_symlink():
                    raise FileExistsError(f"{path} exists") from None
                os.replace(temp_name, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
    with contextlib.suppress(OSError):  # not every platform can fsync a directory
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
