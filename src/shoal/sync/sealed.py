"""The hub as one end-to-end encrypted folder sees it (SPEC "Encryption").

`open_folder_key` unwraps the folder's key from the hub with the passphrase (or makes the key
of a new folder); `SealedFolderHub` stands in for the Hub inside one folder's sync: the engine,
the uploader and the downloader keep working with plaintext paths, hashes and sizes, and
everything that reaches the hub is sealed (core.sealing). Everything read back is opened and
checked: a row that fails its authentication, was moved to another device or seq, or is served
again under a new id (a replay, noticed against the rows this device read before), stops the
folder's sync with FolderKeyProblem; a block that fails is refused like a corrupt block.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace

from shoal.config import FolderConfig, read_passphrase
from shoal.core.sealing import (FolderSealer, RowPlaintext, SealedRow, key_fingerprint, new_wrapped_key,
                                sealed_size, unwrap_key)
from shoal.errors import ConfigError, FolderKeyProblem, SealBroken, WrongPassphrase
from shoal.hub.client import ContentInfo, Hub, PushResult
from shoal.localstore import Store
from shoal.localstore.store import folder_key_meta
from shoal.model import Change, HeadVersion, HistoryEntry, RestoreStep


def open_folder_key(hub: Hub, folder: FolderConfig, store: Store, *,
                    random_bytes: Callable[[int], bytes] = os.urandom) -> FolderSealer:
    """The sealer of an encrypted folder: its key unwrapped from the hub with the folder's
    passphrase, or a new key (wrapped and stored on the hub) for a folder without history.

    Raises FolderKeyProblem: the passphrase file is unusable, the passphrase is wrong, the folder
    has unencrypted history on the hub, or the hub's key is not the one this device used before.
    """
    try:
        passphrase = read_passphrase(folder)
    except ConfigError as e:
        raise FolderKeyProblem(str(e)) from None
    for _ in range(3):
        wrapped, history = hub.folder_key(folder.id)
        if wrapped is not None:
            try:
                key = unwrap_key(wrapped, passphrase)
            except WrongPassphrase:
                raise WrongPassphrase(f"folder {folder.id}: wrong passphrase in {folder.passphrase_file}: it does "
                                      "not open the folder's key on the hub (was it changed on another "
                                      "device with `shoal folder passphrase`?)") from None
            break
        if history:
            raise FolderKeyProblem(
                f"folder {folder.id} already has unencrypted history on the hub: encryption cannot be turned "
                "on for it (give the folder a new id to sync it encrypted, or remove its encryption setting)")
        key, wrapped = new_wrapped_key(passphrase, random_bytes)
        if hub.set_folder_key(folder.id, wrapped, None):
            break
    else:
        raise FolderKeyProblem(f"folder {folder.id}: the hub's key kept changing while it was read")
    fingerprint = key_fingerprint(key)
    pinned = store.get_meta(folder_key_meta(folder.id))
    if pinned is not None and pinned != fingerprint:
        raise FolderKeyProblem(
            f"folder {folder.id}: the key on the hub is not the one this device has synced with (replaced "
            "on the hub?); nothing is synced until it is put back")
    store.set_meta(folder_key_meta(folder.id), fingerprint)
    return FolderSealer(key, folder.id)


class SealedFolderHub:
    """The Hub API for one encrypted folder: plaintext in, sealed on the hub, checked on the way back."""

    def __init__(self, hub: Hub, sealer: FolderSealer, store: Store):
        self.hub = hub
        self.sealer = sealer
        self.store = store
        self.folder_id = sealer.folder_id

    @property
    def device_id(self) -> str:
        return self.hub.device_id

    @property
    def incarnation_id(self) -> str:
        return self.hub.incarnation_id

    @incarnation_id.setter
    def incarnation_id(self, value: str) -> None:
        self.hub.incarnation_id = value  # the engine starts a new incarnation on the hub itself

    # -- changelog rows ---------------------------------------------------------------

    def push(self, folder_id: str, rows: list[dict]) -> list[PushResult]:
        sent: dict[int, dict] = {}
        rows_by_seq = {r["seq"]: r["path"] for r in rows}
        for r in rows:
            sr = self.sealer.seal_row(
                RowPlaintext(r["path"], r["kind"], r["size"], r["mtime_ns"], r["sha256"], r["deleted"],
                             r["target"], r["moved_from"], r["conflict_of"]),
                device_id=self.device_id, incarnation=self.incarnation_id, seq=r["seq"])
            sent[r["seq"]] = {"seq": r["seq"], "path": sr.path, "kind": sr.kind, "size": sr.size, "mtime_ns": 0,
                              "sha256": sr.sha256, "target": None, "deleted": sr.deleted, "base": r["base"],
                              "moved_from": None, "conflict_of": None, "sealed": sr.sealed}
        results = self.hub.push(folder_id, list(sent.values()))
        return [replace(r, head=self._open_head(r.head, sent[r.seq]["path"], rows_by_seq[r.seq]))
                if r.head else r for r in results]

    def _not_rolled_back(self, path: str, version: int) -> None:
        """A head older than a version of the path this device has read is the hub going back."""
        seen = self.store.read_version(self.folder_id, path)
        if seen is not None and version < seen:
            raise SealBroken(f"folder {self.folder_id}: the hub answers with a version of {path!r} older than one "
                             "this device has read (a rollback)")

    def _open_head(self, head: HeadVersion, hub_path: str, path: str) -> HeadVersion:
        row = self._open(hub_path, head.kind, head.sha256, head.deleted, head.sealed, head.device_id,
                         head.incarnation, head.seq)
        self._not_rolled_back(path, head.version)
        return HeadVersion(head.version, head.device_id, row.kind, row.size, row.mtime_ns, row.sha256, row.deleted,
                           row.target, head.device_name)

    def _open(self, hub_path: str, kind: str, sha: str, deleted: bool, sealed: bytes | None,
              device_id: str | None, incarnation: str | None, seq: int | None) -> RowPlaintext:
        if sealed is None or device_id is None or incarnation is None or seq is None:
            raise SealBroken(f"folder {self.folder_id}: the hub served an unsealed row in an encrypted folder")
        return self.sealer.open_row(SealedRow(hub_path, kind, 0, sha, deleted, sealed),
                                    device_id=device_id, incarnation=incarnation, seq=seq)

    def _open_change(self, c: Change) -> Change:
        row = self._open(c.path, c.kind, c.sha256, c.deleted, c.sealed, c.device_id, c.incarnation, c.seq)
        return Change(c.folder_id, row.path, row.kind, row.size, row.mtime_ns, row.sha256, row.deleted, row.target,
                      seq=c.seq, version=c.version, device_id=c.device_id, device_name=c.device_name,
                      moved_from=row.moved_from, conflict_of=row.conflict_of, incarnation=c.incarnation)

    def pull(self, folder_id: str, after: int, limit: int = 1000, *, stub_own: bool = False) -> list[Change]:
        """The page, opened and checked; this device's own rows come as the hub has them (the
        engine never applies them: opening them would only cost time)."""
        return self._opened_page(folder_id, self.hub.pull(folder_id, after, limit, stub_own=stub_own))

    def _opened_page(self, folder_id: str, page: list[Change]) -> list[Change]:
        page = [c if c.device_id == self.device_id else self._open_change(c) for c in page]
        theirs = [c for c in page if c.device_id != self.device_id]
        replays = self.store.replayed_rows(folder_id, [(c.device_id, c.incarnation, c.seq, c.version, c.path)
                                                       for c in theirs])
        if replays:
            c = theirs[replays[0]]
            raise SealBroken(f"folder {folder_id}: the hub served a changelog row of device {c.device_id[:8]} "
                             f"(seq {c.seq}) again under a new id: a replay of an old version")
        return page

    def ack_pull(self, folder_id: str, cursor: int) -> None:
        self.hub.ack_pull(folder_id, cursor)

    def heads(self, folder_id: str) -> list[Change]:
        return [self._open_change(c) for c in self.hub.heads(folder_id)]

    def heads_at(self, folder_id: str, paths: Sequence[str]) -> list[Change]:
        heads = [self._open_change(c) for c in self.hub.heads_at(folder_id, [self.sealer.seal_path(p) for p in paths])]
        for h in heads:
            self._not_rolled_back(h.path, h.version)
        return heads

    def history(self, folder_id: str, path: str | None, limit: int = 100,
                before: int | None = None) -> list[HistoryEntry]:
        hub_path = None if path is None else self.sealer.seal_path(path)
        return [HistoryEntry(self._open_change(e.change), e.time)
                for e in self.hub.history(folder_id, hub_path, limit, before)]

    def restore_plan(self, folder_id: str, mode: str, when, device_name: str | None = None) -> list[RestoreStep]:
        return [RestoreStep(self.sealer.open_path(st.path), st.head_version, st.head_deleted,
                            HistoryEntry(self._open_change(st.target.change), st.target.time) if st.target else None,
                            st.later)
                for st in self.hub.restore_plan(folder_id, mode, when, device_name)]

    def horizon_and_pull(self, folder_id: str, after: int, limit: int = 1000, *,
                         stub_own: bool = False) -> tuple[int, list[Change]]:
        horizon, page = self.hub.horizon_and_pull(folder_id, after, limit, stub_own=stub_own)
        return horizon, self._opened_page(folder_id, page)

    # -- contents and blocks ----------------------------------------------------------

    def seal_block(self, data: bytes) -> tuple[str, bytes]:
        return self.sealer.seal_block(data)

    def open_block(self, name: str, stored: bytes) -> bytes | None:
        if self.hub.open_block(name, stored) is None:  # the hub's name check, as for any block
            return None
        try:
            return self.sealer.open_block(stored)
        except SealBroken:
            return None

    def stored_size(self, size: int) -> int:
        return sealed_size(size)

    def _ids(self, shas: Sequence[str]) -> dict[str, str]:
        return {self.sealer.content_id(s): s for s in shas}

    def missing_contents(self, shas: Sequence[str]) -> set[str]:
        ids = self._ids(shas)
        return {ids[i] for i in self.hub.missing_contents(list(ids)) if i in ids}

    def put_small_contents(self, items: Sequence[tuple[str, bytes]], block_size: int) -> int:
        return self.hub.put_sealed_small(
            [(self.sealer.content_id(sha), *self.sealer.seal_block(data)) for sha, data in items], block_size)

    def put_content(self, sha256: str, size: int, block_size: int, blocks: list[str]) -> None:
        self.hub.put_sealed_content(self.sealer.content_id(sha256), block_size, blocks)

    def get_contents(self, shas: Sequence[str]) -> dict[str, ContentInfo]:
        ids = self._ids(shas)
        return {ids[i]: ContentInfo(ids[i], info.size, info.block_size, info.blocks)
                for i, info in self.hub.get_contents(list(ids)).items() if i in ids}

    def missing_blocks(self, names: Sequence[str]) -> set[str]:
        return self.hub.missing_blocks(names)

    def put_blocks(self, blocks: Sequence[tuple[str, bytes]]) -> int:
        return self.hub.put_blocks(blocks)

    def get_blocks(self, names: Sequence[str]) -> dict[str, bytes]:
        return self.hub.get_blocks(names)


def readable_places(hub: Hub, folders: Sequence[FolderConfig], store: Store, places: list[str]) -> list[str]:
    """`folder:path` places from the hub (e.g. `shoal dupes`) with the paths of encrypted folders
    opened; `folder:(encrypted)` where this device cannot open them. Raises HubError."""
    by_id = {f.id: f for f in folders}
    sealers: dict[str, FolderSealer | None] = {}
    out = []
    for place in places:
        folder_id, _, path = place.partition(":")
        folder = by_id.get(folder_id)
        if folder is None or not folder.encrypted:
            out.append(place)
            continue
        if folder_id not in sealers:
            try:
                sealers[folder_id] = open_folder_key(hub, folder, store)
            except FolderKeyProblem:
                sealers[folder_id] = None
        sealer = sealers[folder_id]
        try:
            out.append(f"{folder_id}:{sealer.open_path(path)}" if sealer else f"{folder_id}:(encrypted)")
        except SealBroken:
            out.append(f"{folder_id}:(encrypted)")
    return out
