"""File system watching: watchdog observers whose events only mark a folder dirty.

Events are hints (they get lost: inotify overflow, Android shared storage); the scanner is
the truth. When a folder cannot be watched (inotify watch limit, no events on FUSE storage),
the daemon falls back to periodic rescans and says so in `state`.
"""

from __future__ import annotations

import errno
import logging
import os
import unicodedata
from collections.abc import Callable

from watchdog.events import (DirCreatedEvent, DirDeletedEvent, DirModifiedEvent, DirMovedEvent, FileClosedEvent,
                             FileCreatedEvent, FileDeletedEvent, FileModifiedEvent, FileMovedEvent,
                             FileSystemEvent, FileSystemEventHandler)
from watchdog.observers import Observer

from shoal.config import FolderConfig
from shoal.core.paths import SHOAL_DIR
from shoal.platform import is_android_shared_storage

log = logging.getLogger("shoal.watcher")
# Only what changes a folder. Reads (IN_OPEN / IN_CLOSE_NOWRITE) are not subscribed to: every
# file the scanner hashes or the uploader reads would otherwise queue two events (a 100k-file
# first index overflows the inotify queue, and each event costs Python time in the observer).
WRITE_EVENTS = [FileCreatedEvent, FileModifiedEvent, FileDeletedEvent, FileMovedEvent, FileClosedEvent,
                DirCreatedEvent, DirModifiedEvent, DirDeletedEvent, DirMovedEvent]
# (folder id, directory, recursive, path of a file closed after writing or None)
OnDirty = Callable[[str, str, bool, "str | None"], None]
INOTIFY_HINT = "raise it with: sudo sysctl fs.inotify.max_user_watches=524288"


class _Handler(FileSystemEventHandler):
    """Turns events into the part of the folder to rescan: a file's directory (its own files
    only), or a directory that appeared or went away (all of it). A file closed after writing
    is also named (`settled`): it is complete, no need to wait for the debounce time."""

    def __init__(self, folder_id: str, root: str, on_dirty: OnDirty):
        self.folder_id = folder_id
        self.root = root.rstrip("/")
        self.shoal_dir = self.root + "/" + SHOAL_DIR
        self.on_dirty = on_dirty

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        for path in (event.src_path, getattr(event, "dest_path", "") or ""):
            if isinstance(path, bytes):
                path = os.fsdecode(path)
            if not path or path == self.shoal_dir or path.startswith(self.shoal_dir + "/"):
                continue  # our own temp files and trash
            if path == self.root:
                self.on_dirty(self.folder_id, "", False, None)
                continue
            rel = unicodedata.normalize("NFC", os.path.relpath(path, self.root)).replace(os.sep, "/")
            if rel.startswith("../"):
                continue
            if event.is_directory and event.event_type in ("created", "deleted", "moved"):
                self.on_dirty(self.folder_id, rel, True, None)
            else:
                settled = rel if event.event_type == "closed" and not event.is_directory else None
                self.on_dirty(self.folder_id, os.path.dirname(rel), False, settled)


class FolderWatcher:
    """One observer, one recursive watch per folder; `update` follows config changes."""

    def __init__(self, on_dirty: OnDirty):
        self.on_dirty = on_dirty
        self.observer = Observer()
        self.observer.daemon = True
        self.watches: dict[str, tuple[str, object]] = {}
        self.problems: dict[str, str] = {}
        self.started = False

    @property
    def state(self) -> str:
        if not self.problems:
            return "watching" if self.watches else "idle"
        return "; ".join(f"{fid}: {why} (periodic rescans only)" for fid, why in sorted(self.problems.items()))

    def update(self, folders: tuple[FolderConfig, ...]) -> None:
        if not self.started:
            self.observer.start()
            self.started = True
        wanted = {f.id: str(f.path) for f in folders if f.watch}
        for f in folders:
            if not f.watch:
                self.problems[f.id] = "watching off in the config"
        for fid in list(self.watches):
            if wanted.get(fid) != self.watches[fid][0]:
                self.observer.unschedule(self.watches.pop(fid)[1])
        for fid in list(self.problems):
            if fid not in wanted and not any(f.id == fid and not f.watch for f in folders):
                self.problems.pop(fid)
        for fid, path in wanted.items():
            if fid in self.watches:
                continue
            if is_android_shared_storage(path, os.path.expanduser("~")):
                self.problems[fid] = "Android shared storage may deliver no file events"
            try:
                self.watches[fid] = (path, self.observer.schedule(_Handler(fid, path, self.on_dirty), path,
                                                                  recursive=True, event_filter=WRITE_EVENTS))
                # Whatever was written before the watch was set made no event: look once.
                self.on_dirty(fid, "", True, None)
                if fid in self.problems and not is_android_shared_storage(path, os.path.expanduser("~")):
                    self.problems.pop(fid)
                    log.info("folder %s: watching again", fid)
            except OSError as e:
                if fid in self.problems:
                    continue  # still failing; said so already
                if e.errno == errno.ENOENT:
                    # Not there yet (the first cycle creates it) or gone (the cycle pauses it).
                    self.problems[fid] = "folder not there; watching when it is"
                    log.info("folder %s: %s", fid, self.problems[fid])
                    continue
                if e.errno == errno.ENOSPC:
                    self.problems[fid] = f"inotify watch limit reached; {INOTIFY_HINT}"
                else:
                    self.problems[fid] = f"cannot watch: {e.strerror or e}"
                log.warning("folder %s: %s", fid, self.problems[fid])

    def stop(self) -> None:
        if self.started:
            self.observer.stop()
            self.observer.join(timeout=5)
