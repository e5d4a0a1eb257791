"""Test devices: a folder, a store and an engine each, all syncing through one real hub."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from shoal.config import Config, DeviceConfig, FolderConfig, HubConfig, SyncConfig
from shoal.localstore import open_store
from shoal.sync.engine import SyncEngine
from shoal.hub.client import open_hub


class Device:
    def __init__(self, base: Path, name: str, hub_url: str, *, folder_id: str = "docs",
                 mode: str = "send-receive", conflict: str = "keep-both", ignore: tuple[str, ...] = (),
                 call_timeout: float | None = None):
        self.name = name
        self.call_timeout = call_timeout
        self.root = base / name / "folder"
        self.root.mkdir(parents=True)
        self.state = base / name / "state"
        self.hub_url = hub_url
        self.folder_id = folder_id
        self.config = Config(
            path=base / name / "config.yaml", device=DeviceConfig(name), state_dir=self.state,
            hub=HubConfig(url=hub_url),
            folders=(FolderConfig(folder_id, self.root, mode, ignore),),
            sync=SyncConfig(conflict=conflict))
        self.store = open_store(self.state)
        self.engine = SyncEngine(self.config, self.store, self.hub)

    def hub(self):
        return open_hub(self.hub_url, None, self.store.device_id, self.store.incarnation_id,
                        call_timeout=self.call_timeout)

    def sync(self, **kw):
        return self.engine.cycle(**kw)

    def write(self, rel: str, data: bytes | str, mtime: float | None = None) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        if mtime is not None:
            os.utime(p, (mtime, mtime))
        return p

    def read(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def files(self) -> dict[str, str]:
        """path -> sha256 of every file on disk (symlinks: of their target), .shoal excluded."""
        out = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel_dir = os.path.relpath(dirpath, self.root)
            if rel_dir == ".":
                dirnames[:] = [d for d in dirnames if d != ".shoal"]
            for fn in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                full = os.path.join(dirpath, fn)
                rel = fn if rel_dir == "." else f"{rel_dir}/{fn}"
                if os.path.islink(full):
                    out[rel] = hashlib.sha256(os.fsencode(os.readlink(full))).hexdigest()
                else:
                    out[rel] = hashlib.sha256(Path(full).read_bytes()).hexdigest()
        return out

    def index(self) -> dict[str, str]:
        return {f.path: f.sha256 for f in self.store.iter_files(self.folder_id) if not f.deleted}

    def trash(self) -> list[str]:
        t = self.root / ".shoal" / "trash"
        return sorted(str(p.relative_to(t)) for p in t.rglob("*") if p.is_file()) if t.exists() else []

    def close(self):
        self.store.close()


def assert_converged(devices: list[Device]) -> dict[str, str]:
    """Every device: disk == its index == the hub's heads, and all devices equal."""
    hub = devices[0].hub()
    try:
        heads = {h.path: h.sha256 for h in hub.heads(devices[0].folder_id) if not h.deleted}
    finally:
        hub.close()
    for d in devices:
        assert d.files() == heads, f"{d.name}: disk differs from hub heads"
        assert d.index() == heads, f"{d.name}: index differs from hub heads"
        assert d.store.pending_count(d.folder_id) == 0, f"{d.name}: changes still waiting"
    return heads


def sync_all(devices: list[Device], rounds: int = 2) -> None:
    for _ in range(rounds):
        for d in devices:
            d.sync()
