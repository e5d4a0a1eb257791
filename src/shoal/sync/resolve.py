"""`shoal conflicts resolve PATH --keep mine|theirs|both` (and `--all`): act on a recorded
conflict with ordinary local changes, pushed like any edit.

Under keep-both a conflict leaves two files: the version that kept the path and a conflict copy
beside it, whose name carries the device that made its version. "mine" is this device's version
(the copy when it carries this device's name, else the one at the path), "theirs" the other. Keeping one puts the other in the trash (the copy is
moved over the path when it is the one kept); keeping both only stops listing the conflict.
When the other version went to a trash (newest-wins), only the path's version can be kept here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shoal.core.conflicts import copy_is_from
from shoal.errors import UsageError
from shoal.sync.engine import SyncEngine, raise_if_paused
from shoal.sync.folder_io import FolderWriter

KEEP = ("mine", "theirs", "both")


@dataclass
class Resolved:
    kept: list[tuple[str, str, str]] = field(default_factory=list)  # (folder, path, which version kept)


def resolve_conflicts(engine: SyncEngine, path: str | None, keep: str, *, folder_id: str | None = None,
                      sync: bool = True) -> Resolved:
    """Resolve the conflict(s) of `path` (the path or its conflict copy; None: every one).
    Raises UsageError when there is none, or when the version to keep is not on this device."""
    if keep not in KEEP:
        raise UsageError(f"--keep is one of {', '.join(KEEP)}")
    store = engine.store
    rows = [c for c in store.conflicts(folder_id) if path is None or path in (c["path"], c["conflict_path"])]
    if not rows:
        raise UsageError(f"no conflict recorded for {path}" if path else "no conflicts recorded")
    done = Resolved()
    folders = set()
    for c in rows:
        f = engine.config.folder(c["folder"])
        if f is None:
            continue
        copy = c["conflict_path"]
        # The copy's name says whose version it keeps; without a copy, the loser's went to a trash.
        mine_is_copy = (copy_is_from(copy, engine.device_name) if copy is not None
                        else c["loser_device"] == engine.device_name)
        keep_copy = copy is not None and keep != "both" and (keep == "mine") == mine_is_copy
        if keep != "both" and copy is None and (keep == "mine") == mine_is_copy:
            raise UsageError(f"{c['path']}: the other version went to the trash (newest-wins); bring it back "
                             f"with `shoal log {c['path']}` and `shoal restore`")
        with FolderWriter(f.path) as w:
            if keep == "both" or copy is None or w.lstat(copy) is None:
                pass
            elif keep_copy:
                if w.lstat(c["path"]) is not None:
                    w.to_trash(c["path"], engine.clock())
                w.rename(copy, c["path"])
            else:
                w.to_trash(copy, engine.clock())
            w.fsync_touched_dirs()
        store.forget_conflict(f.id, c["path"], copy)
        done.kept.append((f.id, c["path"], "both" if keep == "both" else ("conflict copy" if keep_copy else "path")))
        folders.add(f.id)
    if sync and folders:
        raise_if_paused(engine.cycle(sorted(folders)))
    return done
