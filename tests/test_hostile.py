"""Malicious and hostile input at the receiving device: generated remote paths and metadata,
a symlink swapped in between check and write, a rogue device's forged content, a full disk,
clocks hours off."""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.devices import Device, assert_converged
from shoal.core.paths import validate_remote_path
from shoal.errors import PathRefused
from shoal.model import Change
from shoal.sync.apply import Applier
from shoal.sync.folder_io import FolderWriter
from shoal.hub.client import open_hub
from shoal.sync.transfer import Downloader

CONTENT = b"payload from a rogue device"
SHA = hashlib.sha256(CONTENT).hexdigest()


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def rogue(hub_url):
    """A registered device pushing whatever it likes straight through the hub API."""
    hub = open_hub(hub_url, None, str(uuid.uuid4()), str(uuid.uuid4()))
    hub.register("rogue")
    hub.put_small_contents([(SHA, CONTENT)], 128 * 1024)
    yield hub
    hub.close()


_path_chars = st.sampled_from(list("ab./\\:\x00 ~*?<>|") + ["..", ".shoal", "con", "é", "e\u0301", "/", "//"])
remote_paths = st.one_of(
    st.text(min_size=0, max_size=40),
    st.lists(_path_chars, min_size=1, max_size=12).map("".join),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=remote_paths, mtime=st.integers(min_value=-2**63, max_value=2**63 - 1))
@example(path="link-out/evil.txt", mtime=0)
@example(path="../escape.txt", mtime=0)
@example(path="/tmp/abs.txt", mtime=0)
@example(path="ok/fine.txt", mtime=1_700_000_000 * 10**9)
def test_generated_remote_paths_never_escape_the_folder(tmp_path_factory, rogue, path, mtime):
    sandbox = tmp_path_factory.mktemp("sandbox")
    root = sandbox / "folder"
    root.mkdir()
    (sandbox / "canary").mkdir()
    (root / "link-out").symlink_to(sandbox / "canary")  # a symlink inside pointing outside
    before_outside = _tree(sandbox) - {str(p.relative_to(sandbox)) for p in root.rglob("*")}
    from shoal.localstore import open_store

    store = open_store(sandbox / "state")
    store.ensure_folder("f", str(root))
    ch = Change("f", path, "file", len(CONTENT), mtime, SHA, version=10**9, device_id="rogue")
    with Applier(store, "f", root, lambda w: Downloader(rogue, w), {"f": root}, now=lambda: 1.7e9) as ap:
        stats = ap.apply([ch])
    store.close()
    after_outside = _tree(sandbox) - {str(p.relative_to(sandbox)) for p in root.rglob("*")}
    assert after_outside - before_outside <= {"state", "state/shoal.db", "state/shoal.db-wal", "state/shoal.db-shm"}
    assert not any((sandbox / "canary").iterdir()), "a write escaped through the symlink"
    try:
        validate_remote_path(path)
        valid = not path.startswith("link-out/") and path != "link-out"
    except PathRefused:
        valid = False
    if valid:
        assert (root / path).read_bytes() == CONTENT and stats.written == 1
    else:
        assert stats.written == 0


def test_symlink_swapped_into_parent_between_check_and_write(tmp_path, rogue, monkeypatch):
    from shoal.localstore import open_store

    root = tmp_path / "folder"
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    store = open_store(tmp_path / "state")
    store.ensure_folder("f", str(root))
    real_flush = FolderWriter.flush_all

    def swap_then_flush(self):
        # The attack: after the path was checked, `sub` becomes a symlink to a directory outside.
        os.rename(root / "sub", root / "sub.orig")
        os.symlink(outside, root / "sub")
        real_flush(self)

    monkeypatch.setattr(FolderWriter, "flush_all", swap_then_flush)
    ch = Change("f", "sub/evil.txt", "file", len(CONTENT), 1_700_000_000 * 10**9, SHA, version=1,
                device_id="rogue")
    with Applier(store, "f", root, lambda w: Downloader(rogue, w), {"f": root}, now=lambda: 1.7e9) as ap:
        ap.apply([ch])
    assert list(outside.iterdir()) == [], "the write followed the swapped-in symlink"
    # a fresh writer sees the symlink and refuses the path outright
    monkeypatch.setattr(FolderWriter, "flush_all", real_flush)
    ch2 = Change("f", "sub/evil2.txt", "file", len(CONTENT), 1_700_000_000 * 10**9, SHA, version=2,
                 device_id="rogue")
    with Applier(store, "f", root, lambda w: Downloader(rogue, w), {"f": root}, now=lambda: 1.7e9) as ap:
        stats = ap.apply([ch2])
    assert stats.refused == 1 and list(outside.iterdir()) == []
    assert any(e.kind == "refused" and e.path == "sub/evil2.txt" for e in store.errors("f"))
    store.close()


def test_rogue_content_with_wrong_hash_never_reaches_the_folder(tmp_path, hub, rogue):
    b = Device(tmp_path, "beta", hub)
    # The rogue declares content S made of the blocks of other bytes: the hub cannot tell.
    lie = hashlib.sha256(b"what the file should be").hexdigest()
    rogue.put_content(lie, len(CONTENT), 128 * 1024, [SHA])
    rows = [
        {"seq": 1, "path": "forged.txt", "kind": "file", "size": len(CONTENT), "mtime_ns": 1,
         "sha256": lie, "target": None, "deleted": False, "base": None},
        {"seq": 2, "path": "good.txt", "kind": "file", "size": len(CONTENT), "mtime_ns": 1,
         "sha256": SHA, "target": None, "deleted": False, "base": None},
        {"seq": 3, "path": "x" * 300, "kind": "file", "size": len(CONTENT), "mtime_ns": 1,
         "sha256": SHA, "target": None, "deleted": False, "base": None},
    ]
    assert [r.status for r in rogue.push("docs", rows)] == ["accepted"] * 3
    b.sync()
    assert not (b.root / "forged.txt").exists()
    assert b.read("good.txt") == CONTENT
    kinds = {e.path: e.kind for e in b.store.errors("docs")}
    assert kinds["forged.txt"] == "block" and kinds["x" * 300] == "refused"
    assert not list((b.root / ".shoal" / "tmp").glob("*.part")) or all(
        p.stat().st_size == 0 for p in (b.root / ".shoal" / "tmp").glob("*.part"))


def test_rogue_row_is_refused_at_the_hub(rogue):
    from shoal.errors import HubError

    with pytest.raises(HubError):
        rogue.push("docs", [{"seq": 9, "path": "a", "kind": "fifo", "size": 1, "mtime_ns": 1,
                             "sha256": SHA, "target": None, "deleted": False, "base": None}])
    with pytest.raises(HubError):  # content not on the hub
        rogue.push("docs", [{"seq": 10, "path": "a", "kind": "file", "size": 1, "mtime_ns": 1,
                             "sha256": "0" * 64, "target": None, "deleted": False, "base": None}])


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_while_downloading(tmp_path, hub, small_disk):
    a = Device(tmp_path, "alpha", hub)
    b = Device(tmp_path / "b", "beta", hub)
    b.root.rmdir()
    b.root = small_disk / "folder"
    b.root.mkdir()
    b.config = b.config.__class__(**{**b.config.__dict__, "folders": (
        b.config.folders[0].__class__("docs", b.root),)})
    b.engine.config = b.config
    big = os.urandom(5 * 1024 * 1024)
    a.write("big.bin", big)
    a.write("small.txt", "fits")
    a.sync()
    report = b.sync()
    assert report.folders[0].failed == 1
    assert b.read("small.txt") == b"fits"
    assert not (b.root / "big.bin").exists()  # nothing half-written in place
    errors = {e.path: e for e in b.store.errors("docs")}
    assert "no space left" in errors["big.bin"].message
    subprocess.run(["mount", "-o", "remount,size=20m", str(small_disk)], check=True)
    b.engine.cycle(retry_now=True)
    assert b.read("big.bin") == big
    assert not b.store.errors("docs")
    assert_converged([a, b])


def test_clocks_hours_apart_still_converge(tmp_path, hub):
    import time as _time

    a = Device(tmp_path, "alpha", hub)
    b = Device(tmp_path, "beta", hub)
    a.engine.clock = lambda: _time.time() + 5 * 3600  # alpha's clock runs five hours fast
    b.engine.clock = lambda: _time.time() - 3 * 3600
    a.write("f.txt", "v1")
    a.sync()
    b.sync()
    a.write("f.txt", "alpha", mtime=1_800_000_000)
    b.write("f.txt", "beta", mtime=1_800_000_100)
    a.sync()
    b.sync()
    a.sync()
    heads = assert_converged([a, b])
    assert a.read("f.txt") == b"beta"  # decided by the files' mtimes, not by the devices' clocks
    assert len(heads) == 2
