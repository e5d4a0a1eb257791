"""History from the hub (SPEC "History and retention"): `shoal log`, `shoal restore` and
`shoal revert`.

A restore is an ordinary new change: the version brought back is written into the folder
(from a local copy of its content when there is one, else from the hub; the file it replaces
goes to the trash first), indexed as a local edit based on the current head, and pushed, so
every device gets it like any edit. A restore of a whole folder to a point in time, or the
revert of what one device pushed since a time, is one batch of such changes. Nothing is
restored on a folder that is not in sync first: the cycle before the plan makes the local
files the heads, so the plan's bases are this device's versions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from shoal.config import FolderConfig
from shoal.errors import UsageError
from shoal.model import KIND_FILE, Change, HistoryEntry, RestoreStep
from shoal.sync.apply import Applier
from shoal.sync.engine import SyncEngine, raise_if_paused
from shoal.sync.transfer import Downloader

HISTORY_LIMIT = 10_000  # versions of one path read for a restore (the hub's bound per call)


def change_kind(ch: Change) -> str:
    """What a version was, for `shoal log`: delete, rename, conflict copy or edit."""
    if ch.deleted:
        return "delete"
    if ch.moved_from:
        return "rename"
    if ch.conflict_of:
        return "conflict copy"
    return "edit"


def entry_json(e: HistoryEntry) -> dict:
    ch = e.change
    return {"version": ch.version, "time": e.time.isoformat(), "device": ch.device_name or ch.device_id,
            "path": ch.path, "size": 0 if ch.deleted else ch.size, "sha256": None if ch.deleted else ch.sha256,
            "deleted": ch.deleted, "kind": change_kind(ch)}


@dataclass
class RestoreReport:
    folder_id: str
    dry_run: bool
    restored: list[dict] = field(default_factory=list)  # {path, version, time} brought back
    removed: list[str] = field(default_factory=list)  # paths that did not exist then: to the trash
    left_alone: list[str] = field(default_factory=list)  # changed by another device later (revert)
    failed: list[str] = field(default_factory=list)  # could not be written (retried by no one: say so)

    def as_json(self) -> dict:
        return {"folder": self.folder_id, "dry_run": self.dry_run, "restored": self.restored,
                "removed": self.removed, "left_alone": self.left_alone, "failed": self.failed}


class History:
    """The history of one device's folders, read and restored through its engine."""

    def __init__(self, engine: SyncEngine):
        self.engine = engine

    def folder(self, folder_id: str | None) -> FolderConfig:
        folders = self.engine.config.folders
        if folder_id is None:
            if len(folders) != 1:
                raise UsageError("this device has several folders: name one with --folder ID")
            return folders[0]
        f = self.engine.config.folder(folder_id)
        if f is None:
            raise UsageError(f"no folder with id {folder_id!r} in {self.engine.config.path}")
        return f

    def _view(self, hub, f: FolderConfig):
        hub.register(self.engine.device_name)
        return self.engine.folder_hub(hub, f)

    def log(self, folder_id: str | None, path: str | None, limit: int) -> list[HistoryEntry]:
        """The versions of `path` (None: the folder's latest changes), newest first."""
        f = self.folder(folder_id)
        hub = self.engine.hub_factory()
        try:
            return self._view(hub, f).history(f.id, path, limit)
        finally:
            hub.close()

    def restore(self, folder_id: str | None, *, path: str | None = None, version: int | None = None,
                at: datetime | None = None, device: str | None = None, since: datetime | None = None,
                dry_run: bool = False) -> RestoreReport:
        """Bring back `path` as version `version` or as it was `at`; or the whole folder as it
        was `at`; or (`device`, `since`) undo what that device pushed since then. Syncs the folder
        before (the plan is made against the heads) and after (the restore is pushed)."""
        f = self.folder(folder_id)
        if not f.mode.pushes:
            raise UsageError(f"folder {f.id} is receive-only: a restore there would never reach the hub")
        if not dry_run:
            raise_if_paused(self.engine.cycle([f.id]))
        hub = self.engine.hub_factory()
        try:
            view = self._view(hub, f)
            if path is not None:
                steps = self._path_steps(view, f, path, version, at)
            elif device is not None:
                steps = view.restore_plan(f.id, "revert", since, device)
            else:
                steps = view.restore_plan(f.id, "at", at)
            report = RestoreReport(f.id, dry_run)
            todo = []
            for st in steps:
                if st.later:
                    report.left_alone.append(st.path)
                elif st.target is None or st.target.change.deleted:
                    if not st.head_deleted:
                        report.removed.append(st.path)
                        todo.append(st)
                else:
                    report.restored.append({"path": st.path, "version": st.target.change.version,
                                            "time": st.target.time.isoformat()})
                    todo.append(st)
            if not dry_run and todo:
                report.failed = self._apply(view, f, todo)
        finally:
            hub.close()
        if not dry_run and todo:
            raise_if_paused(self.engine.cycle([f.id]))
        return report

    def _path_steps(self, view, f: FolderConfig, path: str, version: int | None,
                    at: datetime | None) -> list[RestoreStep]:
        entries = view.history(f.id, path, HISTORY_LIMIT)
        if not entries:
            raise UsageError(f"{f.id}: the hub has no version of {path}")
        head = entries[0]
        if version is not None:
            target = next((e for e in entries if e.change.version == version), None)
            if target is None:
                raise UsageError(f"{f.id}: {path} has no version {version} (see `shoal log {path}`)")
        else:
            target = next((e for e in entries if e.time <= at), None)
        if target is not None and target.change.version == head.change.version:
            return []  # it is that version already
        return [RestoreStep(path, head.change.version, head.change.deleted, target)]

    def _apply(self, view, f: FolderConfig, steps: list[RestoreStep]) -> list[str]:
        """Write every step's version into the folder and record it as a local change based on
        the head. Returns the paths that could not be written."""
        store = self.engine.store
        changes = []
        for st in steps:
            if st.target is None or st.target.change.deleted:
                idx = store.get_file(f.id, st.path)
                if idx is None or idx.deleted:
                    continue  # nothing here to remove
                changes.append(Change(f.id, st.path, idx.kind, 0, idx.mtime_ns, idx.sha256, True, idx.target))
            else:
                t = st.target.change
                changes.append(Change(f.id, st.path, t.kind, t.size, t.mtime_ns, t.sha256, False, t.target,
                                      device_name=t.device_name))
        limit = self.engine.limits.download
        with Applier(store, f.id, f.path, lambda w: Downloader(view, w, throttle=limit), self.engine.roots(),
                     now=self.engine.clock) as ap:
            ap.apply(changes)
        heads = {st.path: st.head_version for st in steps}
        failed = []
        now = int(self.engine.clock())
        with store.transaction():
            for ch in changes:
                fs = store.get_file(f.id, ch.path)
                if fs is None or fs.deleted != ch.deleted or (
                        not ch.deleted and (fs.sha256, fs.kind) != (ch.sha256, ch.kind or KIND_FILE)):
                    failed.append(ch.path)
                    continue
                store.record_change(fs._replace(version=heads[ch.path]), now=now)
        return failed
