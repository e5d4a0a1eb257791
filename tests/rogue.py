"""A rogue device of a space for the hostile tests: it pushes whatever rows and contents it likes
straight through the hub API. In an end-to-end encrypted folder it seals them with the folder's
key, as a hostile device of the same space that knows the passphrase could: the victim opens
them without complaint and must still check every value it got."""

from __future__ import annotations

import hashlib

from shoal.core.sealing import FolderSealer, RowPlaintext
from shoal.hub.client import Hub, PushResult

BLOCK = 128 * 1024


def folder_sealer(device) -> FolderSealer:
    """The sealer of a test device's (encrypted) folder, its key opened (or made) on the hub
    (registering the device first, as its first sync would)."""
    hub = device.hub()
    try:
        hub.register(device.name)
        return device.engine.folder_hub(hub, device.config.folders[0]).sealer
    finally:
        hub.close()


class Rogue:
    """`hub`: the rogue's own connection (a registered device). Plain until `knows_key_of`."""

    def __init__(self, hub: Hub):
        self.hub = hub
        self.sealer: FolderSealer | None = None

    def knows_key_of(self, device) -> Rogue:
        """From now on seal like `device`'s folder, if it is encrypted (else stay plain)."""
        if device.config.folders[0].encrypted:
            self.sealer = folder_sealer(device)
        return self

    @property
    def sealed(self) -> bool:
        return self.sealer is not None

    # what the hub's columns hold

    def hub_sha(self, sha: str) -> str:
        """The hub's name of content `sha` (its sha256 column)."""
        return self.sealer.content_id(sha) if self.sealer else sha

    def hub_path(self, path: str) -> str:
        """The hub's key of `path` (its path column)."""
        return self.sealer.seal_path(path) if self.sealer else path

    def block(self, data: bytes) -> tuple[str, bytes]:
        """(hub name, stored bytes) of a block."""
        return self.sealer.seal_block(data) if self.sealer else (hashlib.sha256(data).hexdigest(), data)

    # uploads

    def put_small_contents(self, items: list[tuple[str, bytes]], block_size: int = BLOCK) -> None:
        """One-block contents: (sha256 as the rows will name it, the block's plaintext)."""
        if self.sealer:
            self.hub.put_sealed_small([(self.sealer.content_id(sha), *self.sealer.seal_block(data))
                                       for sha, data in items], block_size)
        else:
            self.hub.put_small_contents(items, block_size)

    def put_blocks(self, datas: list[bytes]) -> list[str]:
        """Store plaintext blocks (sealed if the folder is); returns their hub names."""
        blocks = [self.block(d) for d in datas]
        self.hub.put_blocks(blocks)
        return [name for name, _ in blocks]

    def put_content(self, sha: str, size: int, block_size: int, names: list[str]) -> None:
        """Declare content `sha` made of the blocks `names` (hub names, see put_blocks)."""
        if self.sealer:
            self.hub.put_sealed_content(self.sealer.content_id(sha), block_size, names)
        else:
            self.hub.put_content(sha, size, block_size, names)

    # rows

    def sealed_row(self, r: dict) -> dict:
        """A plaintext row as it goes to the hub (sealed for this rogue's device id and incarnation)."""
        if not self.sealer:
            return r
        sr = self.sealer.seal_row(
            RowPlaintext(r["path"], r["kind"], r["size"], r["mtime_ns"], r["sha256"], r["deleted"],
                         r.get("target"), r.get("moved_from"), r.get("conflict_of")),
            device_id=self.hub.device_id, incarnation=self.hub.incarnation_id, seq=r["seq"])
        return {"seq": r["seq"], "path": sr.path, "kind": sr.kind, "size": sr.size, "mtime_ns": 0,
                "sha256": sr.sha256, "target": None, "deleted": sr.deleted, "base": r.get("base"),
                "moved_from": None, "conflict_of": None, "sealed": sr.sealed}

    def push(self, folder_id: str, rows: list[dict]) -> list[PushResult]:
        return self.hub.push(folder_id, [self.sealed_row(r) for r in rows])

    def close(self) -> None:
        self.hub.close()
