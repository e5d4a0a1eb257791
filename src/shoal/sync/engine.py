"""One sync cycle of a device: scan, push, pull, apply — and conflict resolution.

The engine owns the order of work and the bookkeeping between the local store and the hub:
outbox rows are marked pushed only after the hub committed them; a row the hub refuses for
its values (a path its index cannot hold) is found by bisecting its batch, reported and set
aside until the file changes again, so it never blocks the rows behind it; the pull cursor
advances only after a page was applied; pulled changes that would delete (or empty) most of
a folder pause it until the user confirms, like a scan's mass delete; a hub that changed
identity makes the device re-announce its files instead of deleting anything.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from shoal.config import Config, FolderConfig
from shoal.core.conflicts import sanitize_device_name, unique_path
from shoal.core.guards import KEY_PAUSE_PREFIX, is_key_pause, is_mass_delete, mass_delete_reason
from shoal.core.reconcile import PUSH_OVER_HEAD, SAME, Resolution, Version, resolve_concurrent
from shoal.scan.scanner import ScanResult, check_marker, scan_folders
from shoal.errors import FolderKeyProblem, FolderPaused, HubMismatch, HubRowRefused, HubUnreachable, ShoalError
from shoal.localstore import Store
from shoal.localstore.store import resync_meta
from shoal.model import (CONTENT_KINDS, EMPTY_SHA, KIND_DIR, Change, ErrorKind, FileState, HeadVersion, OutboxState,
                         PushStatus)
from shoal.progress import ProgressSink
from shoal.sync.apply import Applier
from shoal.sync.folder_io import FolderWriter, purge_trash
from shoal.hub.client import Hub, PushResult
from shoal.sync.sealed import SealedFolderHub, open_folder_key
from shoal.sync.transfer import Downloader, TransferLimits, UploadStats, upload_contents

log = logging.getLogger("shoal.engine")
PUSH_BATCH = 5000
PULL_PAGE = 1000
GUARD_KEEP_PAGES = 8  # pages the mass-delete guard read that the pull applies without reading again
MAX_PUSH_ROUNDS = 20
PUSH_PAGE = 10_000  # pending outbox rows read at a time: bounds memory (100,000 took 143 MB on A)
OUTBOX_KEEP_SECONDS = 86400  # pushed rows are kept a day (for `shoal status` and debugging)


@dataclass
class FolderReport:
    folder_id: str
    scan: ScanResult | None = None
    pushed: int = 0
    pulled: int = 0
    written: int = 0
    deleted: int = 0
    conflicts: int = 0
    refused: int = 0
    failed: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    paused: str | None = None
    waiting: int = 0  # outbox rows still pending after the cycle
    held: str | None = None  # why it was only scanned (`cycle(hold=...)`): the user's pause, a run condition


@dataclass
class CycleReport:
    folders: list[FolderReport] = field(default_factory=list)
    error: str | None = None
    hub_reset: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and all(f.paused is None for f in self.folders)

    def summary_lines(self) -> list[str]:
        """One line per folder, as `shoal sync --now` prints it (here or through the daemon)."""
        lines = []
        for fr in self.folders:
            parts = [f"{fr.pushed} pushed", f"{fr.pulled} pulled"]
            if fr.conflicts:
                parts.append(f"{fr.conflicts} conflicts")
            if fr.refused:
                parts.append(f"{fr.refused} refused")
            if fr.failed:
                parts.append(f"{fr.failed} failed (retried later)")
            if fr.waiting:
                parts.append(f"{fr.waiting} waiting")
            if fr.held:
                parts = [f"only scanned, {fr.held}"]
            lines.append(f"{fr.folder_id}: " + ", ".join(parts))
        return lines


class SyncEngine:
    """Runs cycles for one device (one store, one config)."""

    def __init__(self, config: Config, store: Store, hub_factory: Callable[[], Hub], *,
                 clock: Callable[[], float] = time.time, progress: ProgressSink | None = None,
                 release_hub: Callable[[Hub, bool], None] | None = None):
        """`release_hub(hub, ok)` gives back a hub from `hub_factory` after a cycle (ok: the cycle
        completed); by default it is closed (the daemon keeps it: daemon.kept_hub)."""
        self.config = config
        self.store = store
        self.hub_factory = hub_factory
        self.release_hub = release_hub or (lambda hub, ok: hub.close())
        self.clock = clock
        self.progress = progress or ProgressSink()
        # sync.max_*_rate: one Throttle per direction, shared by every folder (a reload makes a new engine)
        self.limits = TransferLimits.of(config.sync.max_upload_rate, config.sync.max_download_rate)
        self.device_id = store.device_id
        self.device_name = config.device.name
        self._retry_now = False
        self._sealers: dict = {}  # folder id -> FolderSealer, once its key was opened
        self._plain_folders: set[str] = set()  # folders with unencrypted history: never encrypted later

    # -- selection ----------------------------------------------------------------

    def _folders(self, folder_ids: Iterable[str] | None) -> list[FolderConfig]:
        if folder_ids is None:
            return list(self.config.folders)
        chosen = []
        for fid in folder_ids:
            f = self.config.folder(fid)
            if f is None:
                from shoal.errors import UsageError
                raise UsageError(f"no folder with id {fid!r} in {self.config.path}")
            chosen.append(f)
        return chosen

    def roots(self) -> dict[str, Path]:
        return {f.id: f.path for f in self.config.folders}

    # -- scanning -------------------------------------------------------------------

    def scan(self, folder_ids: Iterable[str] | None = None, *, allow_mass_delete: bool = False,
             min_age: float = 0.0) -> list[ScanResult]:
        """Index folders without the hub."""
        return scan_folders(self.store, self._folders(folder_ids), now=self.clock(), min_age=min_age,
                            allow_mass_delete=allow_mass_delete, progress=self.progress)

    # -- the cycle ------------------------------------------------------------------

    def cycle(self, folder_ids: Iterable[str] | None = None, *, allow_mass_delete: bool = False,
              min_age: float = 0.0, retry_now: bool = False,
              only_scan: dict[str, list[tuple[str, bool]] | None] | None = None,
              hold: dict[str, str] | None = None,
              settled: set[tuple[str, str]] | None = None) -> CycleReport:
        """Scan, push, pull and apply the chosen folders. Raises HubUnreachable if the hub
        cannot be reached (after the scan: local changes wait in the outbox).

        `retry_now` retries every failed write at once instead of on its own schedule (a user
        asked for this sync). `only_scan` limits the scan to these folders, each to the given
        (directory, recursive) parts or whole (None): where the daemon's watcher saw events. A
        daemon woken because another device pushed need not rescan anything (every local file is
        checked again right before a remote change replaces it); folders not scanned only have
        their marker checked. `hold` maps folders to why they are held back (paused by the user,
        waiting for a run condition): they are scanned like the others, nothing else; when every
        folder is held or paused the hub is not contacted at all. `settled` names files closed
        after writing: taken as they are, whatever `min_age`."""
        self._retry_now = retry_now
        hold = hold or {}
        folders = self._folders(folder_ids)
        report = CycleReport()
        now = int(self.clock())
        run_id = self.store.start_run(None if folder_ids is None else ",".join(f.id for f in folders), now)
        started = time.monotonic()
        try:
            scans = {r.folder_id: r for r in scan_folders(
                self.store, [f for f in folders if only_scan is None or f.id in only_scan],
                now=self.clock(), min_age=min_age, allow_mass_delete=allow_mass_delete,
                progress=self.progress, parts=only_scan, settled=settled)}
            for f in folders:
                scan = scans.get(f.id)
                if scan is not None:
                    paused = scan.paused
                else:
                    self.store.ensure_folder(f.id, str(f.path))
                    stored = self.store.folder(f.id).paused  # a key problem is looked at again below
                    paused = check_marker(self.store, f.id, f.path) or (None if is_key_pause(stored) else stored)
                report.folders.append(FolderReport(f.id, scan=scan, paused=paused, held=hold.get(f.id)))
            if hold and all(fr.paused or fr.held for fr in report.folders):
                self.store.update_run(run_id, status="held", finished_at=int(self.clock()))
                return report
            self.store.update_run(run_id, phase="connect")
            hub = self.hub_factory()
            completed = False
            try:
                active = [f for f, fr in zip(folders, report.folders) if not (fr.paused or fr.held)]
                hub_id = hub.register(self.device_name, [f.id for f in active if f.id not in self._sealers
                                                         and f.id not in self._plain_folders])
                report.hub_reset = self._check_hub_identity(hub_id)
                for f, fr in zip(folders, report.folders):
                    if fr.paused or fr.held:
                        continue
                    try:
                        self._sync_folder(hub, f, fr, run_id, allow_mass_delete=allow_mass_delete)
                    except FolderKeyProblem as e:
                        # Nothing of the folder is written or pushed; the others go on.
                        fr.paused = f"{KEY_PAUSE_PREFIX}{e}"
                        self.store.update_folder(f.id, paused=fr.paused)
                        log.warning("%s: %s", f.id, fr.paused)
                        hub.log_sync(f.id, "paused", fr.pushed, fr.pulled, started, fr.paused)
                        continue
                    if fr.paused:  # the pull's mass-delete guard
                        hub.log_sync(f.id, "paused", fr.pushed, fr.pulled, started, fr.paused)
                        continue
                    self.store.update_folder(f.id, last_sync_at=int(self.clock()))
                    problems = ", ".join(f"{n} {what}" for n, what in ((fr.failed, "failed"), (fr.refused, "refused"))
                                         if n)
                    hub.log_sync(f.id, "partial" if problems else "ok", fr.pushed, fr.pulled, started,
                                 f"{problems} (see shoal status on {self.device_name})" if problems else None)
                completed = True
            except ShoalError as e:
                # The other devices see this device's last error (`shoal devices`), unless the hub
                # itself is what failed.
                if not isinstance(e, HubUnreachable):
                    try:
                        hub.log_sync(None, "failed", sum(f.pushed for f in report.folders),
                                     sum(f.pulled for f in report.folders), started, str(e))
                    except ShoalError:
                        pass
                raise
            finally:
                self.release_hub(hub, completed)
        except ShoalError as e:
            report.error = str(e)
            self.store.update_run(run_id, status="failed", error=str(e), finished_at=int(self.clock()))
            raise
        except BaseException as e:
            self.store.update_run(run_id, status="interrupted", error=type(e).__name__,
                                  finished_at=int(self.clock()))
            raise
        paused = [fr for fr in report.folders if fr.paused]
        self.store.update_run(
            run_id, status="ok" if not paused else "paused", finished_at=int(self.clock()),
            pushed=sum(f.pushed for f in report.folders), pulled=sum(f.pulled for f in report.folders),
            error="; ".join(f"{fr.folder_id}: {fr.paused}" for fr in paused) or None)
        return report

    def _check_hub_identity(self, hub_id: str) -> bool:
        known = self.store.get_meta("hub_id")
        if known == hub_id:
            return False
        if known is not None:
            log.warning("the hub changed identity (%s -> %s): re-announcing local files, deleting nothing",
                        known, hub_id)
            for row in self.store.folders():
                self.store.reset_for_new_hub(row.id, int(self.clock()))
            # What this engine knew of the old hub's folders (keys, plaintext history) is void:
            # an encrypted folder's key goes to the new hub like its files.
            self._sealers.clear()
            self._plain_folders.clear()
        self.store.set_meta("hub_id", hub_id)
        return known is not None

    def folder_hub(self, hub: Hub, f: FolderConfig) -> Hub | SealedFolderHub:
        """The hub as folder `f` uses it: sealing everything for an encrypted folder. Raises
        FolderKeyProblem when the folder's encryption and the hub's disagree or its key cannot
        be opened."""
        if f.encrypted:
            sealer = self._sealers.get(f.id)
            if sealer is None:
                sealer = self._sealers[f.id] = open_folder_key(hub, f, self.store)
            return SealedFolderHub(hub, sealer, self.store)
        if f.id not in self._plain_folders:
            wrapped, history = hub.folder_key(f.id)
            if wrapped is not None:
                raise FolderKeyProblem(f"folder {f.id} is encrypted on the hub: set its encryption.passphrase_file "
                                       "to sync it (nothing is synced until then)")
            if history:
                self._plain_folders.add(f.id)
        return hub

    def _sync_folder(self, hub: Hub, f: FolderConfig, fr: FolderReport, run_id: int, *,
                     allow_mass_delete: bool = False) -> None:
        hub = self.folder_hub(hub, f)
        if is_key_pause(self.store.folder(f.id).paused):
            self.store.update_folder(f.id, paused=None)
        if f.mode.pushes:
            self.store.update_run(run_id, phase=f"push {f.id}")
            self._push(hub, f, fr)
        else:
            # Local edits of a receive-only folder stay local: remote changes replace them
            # (the local version goes to the trash), they never reach the hub.
            self.store.keep_local_only(f.id)
        self.store.update_run(run_id, phase=f"pull {f.id}")
        self._pull(hub, f, fr, allow_mass_delete=allow_mass_delete)
        cutoff = self.clock() - self.config.sync.trash_days * 86400
        purge_trash(f.path, cutoff)
        self.store.prune_outbox(keep_after=int(self.clock()) - OUTBOX_KEEP_SECONDS)
        fr.waiting = self.store.pending_count(f.id)

    # -- push -----------------------------------------------------------------------

    def _coalesce(self, rows: list[Change]) -> list[Change]:
        """Latest pending row per path; older ones are superseded (never reach the hub)."""
        latest: dict[str, Change] = {}
        for ch in rows:
            prev = latest.get(ch.path)
            if prev is not None:
                self.store.mark_outbox([prev.seq], OutboxState.SUPERSEDED)
            latest[ch.path] = ch
        return sorted(latest.values(), key=lambda c: c.seq)

    def _push(self, hub: Hub, f: FolderConfig, fr: FolderReport) -> None:
        """Push every pending row of the folder, a page at a time, however many there are.

        A pass walks the outbox by seq; rows whose conflict was resolved in favour of this
        device stay pending (now based on the head) and go in the next pass. Rows whose content
        could not be uploaded (changed under us) stay pending for the next scan."""
        for _ in range(MAX_PUSH_ROUNDS):
            if not self._push_pass(hub, f, fr):
                return

    def _push_pass(self, hub: Hub, f: FolderConfig, fr: FolderReport) -> bool:
        """One pass over the pending outbox; returns whether a conflict asks for another."""
        after = 0
        again = False
        while True:
            rows = self._coalesce(self.store.pending_changes(f.id, limit=PUSH_PAGE, after_seq=after))
            if not rows:
                return again
            after = rows[-1].seq  # the page's last seq is the latest row of its path: kept by _coalesce
            stats = UploadStats()
            total = sum(c.size for c in rows if not c.deleted and c.kind in CONTENT_KINDS)
            self.progress.phase(f.id, "push", len(rows), total)
            root = str(f.path)
            uploaded = upload_contents(
                hub, ((c.sha256, os.path.join(root, c.path), c.size) for c in rows
                      if not c.deleted and c.kind in CONTENT_KINDS), stats,
                progress=lambda n: self.progress.advance(0, n), throttle=self.limits.upload)
            fr.bytes_up += stats.bytes_sent
            sendable = [c for c in rows if c.deleted or c.kind not in CONTENT_KINDS or c.sha256 in uploaded]
            conflicts = self._push_batches(hub, f, fr, sendable)
            for ch, head in conflicts:
                self._resolve(hub, f, ch, head, fr)
            again = again or bool(conflicts)

    def _push_batches(self, hub: Hub, f: FolderConfig, fr: FolderReport,
                      rows: list[Change]) -> list[tuple[Change, HeadVersion]]:
        """Push rows in batches of PUSH_BATCH; returns their conflicts. One batch is at the hub
        at a time, pushed from a worker thread, while this thread reads the next batch's bases
        and marks the last one pushed: the hub's time and the device's overlap (a batch's paths
        are its own, so neither step waits for the other). A batch the hub refuses or that
        needs a new incarnation is pushed again alone (_push_batch), nothing else in flight.
        An encrypted folder's hub reads the store while opening conflict heads: it pushes one
        batch after the other (the store's connection is not shared between threads)."""
        batches = [rows[i:i + PUSH_BATCH] for i in range(0, len(rows), PUSH_BATCH)]
        conflicts: list[tuple[Change, HeadVersion]] = []
        if len(batches) < 2 or isinstance(hub, SealedFolderHub):
            for batch in batches:
                conflicts += self._push_batch(hub, f, fr, batch)
                self.progress.advance(len(batch))
            return conflicts
        with ThreadPoolExecutor(1, thread_name_prefix="shoal-push") as pool:
            payload = self._batch_payload(f, batches[0])
            flight = pool.submit(hub.push, f.id, payload)
            for k, batch in enumerate(batches):
                following = batches[k + 1] if k + 1 < len(batches) else None
                next_payload = self._batch_payload(f, following) if following else None
                try:
                    results = flight.result()
                except (HubMismatch, HubRowRefused):
                    conflicts += self._push_batch(hub, f, fr, batch, payload)
                    results = None
                if following:
                    payload, flight = next_payload, pool.submit(hub.push, f.id, next_payload)
                if results is not None:
                    conflicts += self._batch_pushed(f, fr, batch, results)
                self.progress.advance(len(batch))
        return conflicts

    def _batch_payload(self, f: FolderConfig, batch: list[Change]) -> list[dict]:
        bases = self.store.versions_of(f.id, [c.path for c in batch])
        return [self._payload(c, bases.get(c.path)) for c in batch]

    def _push_batch(self, hub: Hub, f: FolderConfig, fr: FolderReport, batch: list[Change],
                    payload: list[dict] | None = None) -> list[tuple[Change, HeadVersion]]:
        """Push one batch; returns its conflicts. A batch the hub refuses for the values of a
        row is cut in halves until the refused rows are alone: those are reported and set
        aside (see _refuse_row), every other row is pushed."""
        payload = payload if payload is not None else self._batch_payload(f, batch)
        try:
            try:
                results = hub.push(f.id, payload)
            except HubMismatch:
                self._new_incarnation(hub)
                results = hub.push(f.id, payload)
        except HubRowRefused as e:
            if not _refuses_a_row(e):
                raise
            if len(batch) == 1:
                self._refuse_row(f, fr, batch[0], e)
                return []
            half = len(batch) // 2
            return (self._push_batch(hub, f, fr, batch[:half])
                    + self._push_batch(hub, f, fr, batch[half:]))
        return self._batch_pushed(f, fr, batch, results)

    def _batch_pushed(self, f: FolderConfig, fr: FolderReport, batch: list[Change],
                      results: list[PushResult]) -> list[tuple[Change, HeadVersion]]:
        """Record what the hub took of a batch; returns the batch's conflicts."""
        by_seq = {c.seq: c for c in batch}
        done = [r for r in results if r.status is not PushStatus.CONFLICT]
        # Marked pushed only now, after the hub committed them.
        self.store.mark_pushed(f.id, [(r.seq, by_seq[r.seq].path, r.version) for r in done])
        # a path the hub refused before is taken now: its report goes
        self.store.clear_errors(f.id, (by_seq[r.seq].path for r in done), ErrorKind.REFUSED)
        fr.pushed += len(done)
        return [(by_seq[r.seq], r.head) for r in results if r.status is PushStatus.CONFLICT]

    def _refuse_row(self, f: FolderConfig, fr: FolderReport, ch: Change, e: HubRowRefused) -> None:
        """The hub refuses this row whatever else is in the batch: it is marked `refused` in the
        outbox (no longer pending, so never retried as it is; a later edit of the file records a
        new row, which is pushed) and reported as a per-path error."""
        now = int(self.clock())
        self.store.mark_outbox([ch.seq], OutboxState.REFUSED)
        # No timer retries it: the row waits for the file to change.
        self.store.record_error(f.id, ch.path, ErrorKind.REFUSED, f"not synced: {e}", now, None)
        fr.refused += 1
        log.warning("%s: %s: not synced: %s", f.id, ch.path, e)

    def _new_incarnation(self, hub: Hub) -> None:
        """The hub holds other changes under our (device, incarnation, seq) keys: this store was
        restored from a backup or copied, and its seqs are being reused. A new incarnation makes
        every key fresh, so nothing is refused and nothing the hub has is overwritten."""
        new = str(uuid.uuid4())
        log.warning("the hub already holds other changes under this store's sequence numbers "
                    "(a restored or copied store?): continuing as a new incarnation %s", new)
        self.store.set_meta("incarnation_id", new)
        hub.incarnation_id = new

    def _payload(self, c: Change, base: int | None) -> dict:
        return {"seq": c.seq, "path": c.path, "kind": c.kind, "size": c.size, "mtime_ns": c.mtime_ns,
                "sha256": c.sha256, "target": c.target, "deleted": c.deleted,
                "base": base, "moved_from": c.moved_from,
                "conflict_of": c.conflict_of}

    # -- conflicts ------------------------------------------------------------------

    def _resolve(self, hub: Hub, f: FolderConfig, ch: Change, head: HeadVersion, fr: FolderReport) -> None:
        """The hub's head of `ch.path` is a version this device had not seen: decide."""
        local = Version(ch.path, ch.sha256, ch.deleted, ch.mtime_ns, self.device_id, self.device_name)
        theirs = Version(ch.path, head.sha256, head.deleted, head.mtime_ns, head.device_id, head.shown_name)
        if not f.mode.applies:
            res = Resolution(PUSH_OVER_HEAD)  # a send-only folder is the source of truth
        else:
            res = resolve_concurrent(local, theirs, self.config.sync.conflict)
        now = int(self.clock())
        head_change = head.as_change(f.id, ch.path)
        if res.action is SAME:
            self.store.mark_outbox([ch.seq], OutboxState.PUSHED, head.version)
            self.store.set_version(f.id, ch.path, head.version)
            return
        fr.conflicts += 1
        taken = self._path_taken(f)
        if res.action is PUSH_OVER_HEAD:
            copy_path = None
            if res.head_copy_to:
                copy_path = unique_path(res.head_copy_to, taken)
                self._materialise_copy(hub, f, head_change, copy_path, ch.path)
            winner, loser = self.device_name, theirs.device_name
            self.store.set_version(f.id, ch.path, head.version)  # now based on the head: re-push wins
        else:
            copy_path = None
            if res.local_copy_to and not ch.deleted:
                copy_path = unique_path(res.local_copy_to, taken)
                self._move_local_aside(f, ch, copy_path, trash=False)
            elif res.trash_local and not ch.deleted:
                self._move_local_aside(f, ch, None, trash=True)
            self.store.mark_outbox([ch.seq], OutboxState.CONFLICT)
            winner, loser = theirs.device_name, self.device_name
            self._apply_now(hub, f, [head_change], fr)
        if not (ch.deleted or head.deleted):
            self.store.record_conflict(f.id, ch.path, copy_path, winner, loser, now, head.version)
        log.info("conflict on %s/%s: %s keeps the path%s", f.id, ch.path, winner,
                 f", {copy_path} keeps {loser}'s version" if copy_path else "")

    def _path_taken(self, f: FolderConfig) -> Callable[[str], bool]:
        def taken(p: str) -> bool:
            fs = self.store.get_file(f.id, p)
            return (fs is not None and not fs.deleted) or (f.path / p).exists() or (f.path / p).is_symlink()
        return taken

    def _move_local_aside(self, f: FolderConfig, ch: Change, copy_path: str | None, *, trash: bool) -> None:
        old = self.store.get_file(f.id, ch.path)
        with FolderWriter(f.path) as w:
            if w.lstat(ch.path) is None:
                return
            if trash:
                w.to_trash(ch.path, self.clock())
            else:
                w.rename(ch.path, copy_path)
            w.fsync_touched_dirs()
        with self.store.transaction():
            self.store.put_file(FileState(f.id, ch.path, ch.kind, 0, ch.mtime_ns, 0, ch.sha256, True,
                                          ch.target, old.version if old else None))
            if copy_path:
                st = (f.path / copy_path).lstat()
                self.store.record_change(
                    FileState(f.id, copy_path, ch.kind, st.st_size, st.st_mtime_ns, st.st_ino, ch.sha256,
                              False, ch.target, None), conflict_of=ch.path, now=int(self.clock()))

    def _materialise_copy(self, hub: Hub, f: FolderConfig, head: Change, copy_path: str, of: str) -> None:
        """Write the head's content at a conflict path locally; it syncs as a new file."""
        if head.deleted:
            return
        copy = Change(f.id, copy_path, head.kind, head.size, head.mtime_ns, head.sha256, False, head.target,
                      version=None)
        with Applier(self.store, f.id, f.path, lambda w: Downloader(hub, w, throttle=self.limits.download),
                     self.roots(), now=self.clock) as ap:
            ap.apply([copy])
        fs = self.store.get_file(f.id, copy_path)
        if fs is not None and not fs.deleted:
            self.store.record_change(fs, conflict_of=of, now=int(self.clock()))

    # -- pull -----------------------------------------------------------------------

    def _pull(self, hub: Hub, f: FolderConfig, fr: FolderReport, *, allow_mass_delete: bool = False) -> None:
        row = self.store.folder(f.id)
        cursor = row.pull_cursor if row else 0
        self._retry_failed(hub, f, fr)
        # The first page comes with the folder's GC horizon: one round trip for a cycle's pull.
        horizon, first = hub.horizon_and_pull(f.id, cursor, PULL_PAGE, stub_own=True)
        if cursor > 0 and f.mode.applies and cursor < horizon:
            cursor = self._resync_from_heads(hub, f, fr, cursor, allow_mass_delete=allow_mass_delete)
            if cursor is None:
                return
            first = hub.pull(f.id, cursor, PULL_PAGE, stub_own=True)
        read: list[list[Change]] = [first]
        upto: int | None = None  # changes after this were not weighed by the guard: next cycle
        if f.mode.applies and not allow_mass_delete:
            read, upto, reason = self._remote_mass_delete(hub, f, cursor, first)
            if reason is not None:
                # Nothing of it is applied and the cursor stays: the same changes are weighed
                # again next time, until the user confirms with --allow-mass-delete.
                self.store.update_folder(f.id, paused=reason)
                fr.paused = reason
                log.warning("%s: %s", f.id, reason)
                return
        ahead = iter(read)
        while True:
            page = next(ahead, None)
            if page is None:
                page = hub.pull(f.id, cursor, PULL_PAGE, stub_own=True)
            last = len(page) < PULL_PAGE  # nothing more for now: no need to ask for an empty page
            if upto is not None:
                page = [c for c in page if c.version <= upto]
            if not page:
                break
            theirs: dict[str, Change] = {}
            for ch in page:
                if ch.device_id != self.device_id:
                    theirs[ch.path] = ch  # the latest version of a path in the page wins
            if theirs and f.mode.applies:
                self.progress.phase(f.id, "pull", len(theirs), sum(c.size for c in theirs.values()))
                self._apply_now(hub, f, list(theirs.values()), fr)
            fr.pulled += len(theirs)
            cursor = page[-1].version
            self.store.update_folder(f.id, pull_cursor=cursor)
            if last:
                break
        hub.ack_pull(f.id, cursor)

    def _resync_from_heads(self, hub: Hub, f: FolderConfig, fr: FolderReport, cursor: int, *,
                           allow_mass_delete: bool) -> int | None:
        """The hub's garbage collection removed changes this device had not pulled (it was away
        longer than the hub keeps history): they cannot be replayed, so the folder is brought to
        the hub's current heads instead. A synced file whose path has no head any more was
        deleted there (its tombstone was collected): it goes to the trash. A file that was never
        synced, or a local edit waiting, stays and is pushed. The mass-delete guard weighs the
        deletions like any pull's. Returns the new cursor (None: paused)."""
        heads = {h.path: h for h in hub.heads(f.id)}
        gone: list[FileState] = []
        doomed = 0  # live files this resync deletes
        for fs in self.store.iter_files(f.id, include_deleted=False):
            h = heads.get(fs.path)
            if h is None and fs.version is not None:
                gone.append(fs)
            elif h is not None and h.deleted and (fs.version or 0) < h.version:
                doomed += 1
        doomed += len(gone)
        live = self.store.folder_totals(f.id)[0]
        if not allow_mass_delete and is_mass_delete(doomed, live):
            reason = mass_delete_reason(doomed, live, "deleted by the hub's current state (this device was away "
                                                      "longer than the hub keeps history)")
            self.store.update_folder(f.id, paused=reason)
            fr.paused = reason
            log.warning("%s: %s", f.id, reason)
            return None
        log.warning("%s: away longer than the hub keeps history (cursor %d): resyncing from the current heads",
                    f.id, cursor)
        changes = list(heads.values()) + [
            Change(f.id, fs.path, fs.kind, 0, fs.mtime_ns, fs.sha256, True, fs.target, version=fs.version + 1,
                   device_name="the hub (history collected)") for fs in gone]
        for i in range(0, len(changes), PULL_PAGE):
            self._apply_now(hub, f, changes[i:i + PULL_PAGE], fr)
        fr.pulled += len(changes)
        cursor = max([cursor, *(h.version for h in heads.values())])
        self.store.update_folder(f.id, pull_cursor=cursor)
        self.store.set_meta(resync_meta(f.id), str(int(self.clock())))
        return cursor

    def _remote_mass_delete(self, hub: Hub, f: FolderConfig, cursor: int,
                            first: list[Change]) -> tuple[list[list[Change]], int | None, str | None]:
        """Weigh every change waiting after `cursor` (all pages: spreading deletions over pages
        does not get around the guard) against this device's index: how many live files would
        be deleted, or replaced by an empty file when they are not empty. A deletion whose
        content arrives at another path in the same changes (a rename) is not counted.

        Returns the first pages read (up to GUARD_KEEP_PAGES, in order, so the pull applies them
        without reading them again), the last version weighed (None: no limit; the pull applies
        nothing after it this cycle, so a change pushed meanwhile is weighed next time) and a
        pause reason if the changes are a mass delete by the scan guard's rule (core.guards),
        else None. Memory: the paths counted, not the changes. `first` is the first page, read already."""
        live = self.store.folder_totals(f.id)[0]
        if not is_mass_delete(live, live):  # too few files for any batch to be a mass delete
            return [first], None, None
        pending = self.store.pending_paths(f.id)  # local edits win over remote deletions anyway
        kept: list[list[Change]] = []
        destroyed: set[str] = set()
        kept_elsewhere: set[str] = set()  # paths whose content arrives at another path
        devices: set[str] = set()
        after = cursor
        while True:
            page = first if after == cursor else hub.pull(f.id, after, PULL_PAGE, stub_own=True)
            if len(kept) < GUARD_KEEP_PAGES and (not kept or len(kept[-1]) == PULL_PAGE):
                kept.append(page)
            if not page:
                break
            for ch in page:
                if ch.device_id == self.device_id or ch.path in pending or ch.kind == KIND_DIR:
                    continue  # (a directory holds no content of its own: removing one loses nothing)
                if ch.moved_from and not ch.deleted:
                    old = self.store.get_file(f.id, ch.moved_from)
                    if old is not None and not old.deleted and old.sha256 == ch.sha256:
                        kept_elsewhere.add(ch.moved_from)
                        destroyed.discard(ch.moved_from)
                maybe_empty = ch.kind in CONTENT_KINDS and (ch.size == 0 or ch.sha256 == EMPTY_SHA)
                if not (ch.deleted or maybe_empty):
                    destroyed.discard(ch.path)  # a later version with content: not lost
                    continue
                idx = self.store.get_file(f.id, ch.path)
                if idx is None or idx.deleted:
                    continue
                emptied = not ch.deleted and idx.kind in CONTENT_KINDS and idx.size > 0
                if (ch.deleted and ch.path not in kept_elsewhere) or emptied:
                    destroyed.add(ch.path)
                    devices.add(sanitize_device_name(ch.device_name or (ch.device_id or "?")[:8])[:40])
                else:
                    destroyed.discard(ch.path)
            after = page[-1].version
            if len(page) < PULL_PAGE:
                break
        if not is_mass_delete(len(destroyed), live):
            return kept, after, None
        names = ", ".join(sorted(devices)[:3]) + (", ..." if len(devices) > 3 else "")
        return kept, after, mass_delete_reason(
            len(destroyed), live, f"deleted or emptied by changes from other devices ({names})")

    def _apply_now(self, hub: Hub, f: FolderConfig, changes: list[Change], fr: FolderReport) -> None:
        def progress(n: int) -> None:
            self.progress.advance(0, n)

        with Applier(self.store, f.id, f.path, lambda w: Downloader(hub, w, progress, self.limits.download),
                     self.roots(), now=self.clock) as ap:
            stats = ap.apply(changes)
        fr.written += stats.written
        fr.deleted += stats.deleted
        fr.refused += stats.refused
        fr.failed += stats.failed
        fr.bytes_down += stats.bytes
        fr.conflicts += len(stats.conflicts_seen)
        self.progress.advance(stats.written + stats.deleted)

    def _retry_failed(self, hub: Hub, f: FolderConfig, fr: FolderReport) -> None:
        """Writes that failed earlier (disk full, a block missing) are retried from the head."""
        now = int(self.clock())
        due = [e.path for e in self.store.errors(f.id)
               if e.kind.retried_from_head and (e.next_retry <= now or self._retry_now)]
        if not due:
            return
        heads = hub.heads_at(f.id, due)
        for p in due:
            self.store.clear_error(f.id, p)  # the apply records it again if it fails again
        if heads:
            self._apply_now(hub, f, heads, fr)


def _refuses_a_row(e: HubRowRefused) -> bool:
    """Whether the hub refused something about the rows themselves (a value too long for an
    index, a bound exceeded), not the whole request whatever its rows (a quota: SQLSTATE class
    53, configuration limits), which bisecting would wrongly pin on every row."""
    state = getattr(e.__cause__, "sqlstate", None) or ""
    return not state.startswith("53")


def raise_if_paused(report: CycleReport) -> None:
    paused = [fr for fr in report.folders if fr.paused]
    if paused:
        raise FolderPaused("; ".join(f"folder {fr.folder_id}: {fr.paused}" for fr in paused))


__all__ = ["SyncEngine", "CycleReport", "FolderReport", "ProgressSink", "raise_if_paused"]
