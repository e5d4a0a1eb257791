"""Test devices: a folder, a store and an engine each, all syncing through one real hub.

By default a device connects with its own device login, made by `shoal hub add-device` and
read from a 0600 password file as the app reads it; `owner=True` connects as the hub's owner
instead (a single-user setup, or a test about the owner)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from shoal.config import Config, DeviceConfig, FolderConfig, HubConfig, SyncConfig, read_hub_password
from shoal.localstore import open_store
from shoal.model import KIND_DIR
from shoal.sync.engine import SyncEngine
from shoal.hub.client import open_hub

from tests.fixtures.hubs import DeviceLogin, HubUrl, TestHub


def hub_config(hub: TestHub | str, name: str, *, owner: bool = False, space: str | None = None,
               host: str | None = None, port: int | None = None,
               url_params: dict[str, str] | None = None) -> tuple[HubConfig, DeviceLogin | None]:
    """The `hub:` config of device `name`: its device login from `shoal hub add-device` (over
    TCP, `host`/`port` if given, e.g. a proxy; password in a 0600 file), or with `owner=True`
    the owner's URL and no password. A bare URL string is only taken with `owner=True` (it
    connects as whatever it names, which is never a device login made here); the `hub_url`
    fixture's value is not bare: it names its hub (a device login unless `owner=True`)."""
    if isinstance(hub, HubUrl) and not owner:
        hub = hub.hub
    if isinstance(hub, str):
        if not owner:
            raise TypeError("a bare hub URL connects as whatever role it names: pass the `hub` "
                            "fixture (a TestHub) for a device login, or owner=True on purpose")
        return HubConfig(url=str(hub)), None
    if owner:
        return HubConfig(url=hub.owner_url), None
    login = hub.add_device(name, space=space)
    url = hub.device_url(login, host=host, port=port, **(url_params or {}))
    return HubConfig(url=url, password_file=login.password_file), login


class Device:
    def __init__(self, base: Path, name: str, hub: TestHub | str, *, owner: bool = False,
                 space: str | None = None, host: str | None = None, port: int | None = None,
                 url_params: dict[str, str] | None = None, folder_id: str = "docs",
                 mode: str = "send-receive", conflict: str = "keep-both", ignore: tuple[str, ...] = (),
                 call_timeout: float | None = None, passphrase: str | None = None):
        self.name = name
        self.call_timeout = call_timeout
        self.root = base / name / "folder"
        self.root.mkdir(parents=True)
        self.state = base / name / "state"
        self.folder_id = folder_id
        self.hub_config, self.login = hub_config(hub, name, owner=owner, space=space, host=host,
                                                 port=port, url_params=url_params)
        passphrase_file = None
        if passphrase is not None:
            passphrase_file = base / name / "passphrase"
            passphrase_file.write_text(passphrase + "\n")
            passphrase_file.chmod(0o600)
        self.config = Config(
            path=base / name / "config.yaml", device=DeviceConfig(name), state_dir=self.state,
            hub=self.hub_config,
            folders=(FolderConfig(folder_id, self.root, mode, ignore, passphrase_file),),
            sync=SyncConfig(conflict=conflict))
        self.store = open_store(self.state)
        self.engine = SyncEngine(self.config, self.store, self.hub)

    @property
    def hub_url(self) -> str:
        return self.hub_config.url

    def use_hub(self, hub: TestHub | str, *, owner: bool = False) -> None:
        """From now on sync through another hub (same store and folder), with a new login there."""
        self.hub_config, self.login = hub_config(hub, self.name, owner=owner)

    def hub(self):
        """Connect as the app does: the config's URL and the password it names."""
        return open_hub(self.hub_config.url, read_hub_password(self.hub_config), self.store.device_id,
                        self.store.incarnation_id, call_timeout=self.call_timeout)

    def heads(self) -> list:
        """The hub's heads of the folder, as this device reads them (opened if encrypted)."""
        hub = self.hub()
        try:
            return self.engine.folder_hub(hub, self.config.folders[0]).heads(self.folder_id)
        finally:
            hub.close()

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
        """path -> sha256 of the live files and symlinks of the index."""
        return {f.path: f.sha256 for f in self.store.iter_files(self.folder_id, dirs=False) if not f.deleted}

    def dirs(self) -> set[str]:
        """The directories on disk (.shoal excluded)."""
        out = set()
        for dirpath, dirnames, _ in os.walk(self.root):
            if os.path.samefile(dirpath, self.root):
                dirnames[:] = [d for d in dirnames if d != ".shoal"]
            out.update(os.path.relpath(os.path.join(dirpath, d), self.root) for d in dirnames
                       if not os.path.islink(os.path.join(dirpath, d)))
        return out

    def indexed_dirs(self) -> set[str]:
        return {f.path for f in self.store.iter_files(self.folder_id, dirs=True) if not f.deleted}

    def trash(self) -> list[str]:
        t = self.root / ".shoal" / "trash"
        return sorted(str(p.relative_to(t)) for p in t.rglob("*") if p.is_file()) if t.exists() else []

    def close(self):
        self.store.close()


def assert_converged(devices: list[Device]) -> dict[str, str]:
    """Every device: disk == its index == the hub's heads (files, and directories), and all
    devices equal. Returns the heads of files and symlinks (path -> sha256)."""
    live = [h for h in devices[0].heads() if not h.deleted]
    heads = {h.path: h.sha256 for h in live if h.kind != KIND_DIR}
    dirs = {h.path for h in live if h.kind == KIND_DIR}
    for d in devices:
        assert d.files() == heads, f"{d.name}: disk differs from hub heads"
        assert d.index() == heads, f"{d.name}: index differs from hub heads"
        assert d.dirs() == d.indexed_dirs() == dirs, f"{d.name}: directories differ from hub heads"
        assert d.store.pending_count(d.folder_id) == 0, f"{d.name}: changes still waiting"
    return heads


def sync_all(devices: list[Device], rounds: int = 2) -> None:
    for _ in range(rounds):
        for d in devices:
            d.sync()
