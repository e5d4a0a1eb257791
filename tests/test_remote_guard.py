"""The mass-delete guard on pulled changes (issue 9, item 10): a device that pushes deletions of
most of a folder's files (or empties them) does not get them applied on other devices until
their users confirm with `shoal sync --now --allow-mass-delete`. The guard weighs the opened rows
of an encrypted folder: the tests of renames, pages and emptied files run both ways (`both_ways`)."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.daemons import shoal
from tests.devices import Device, assert_converged, sync_all
from tests.fixtures.devices import both_ways
from shoal.sync import engine

N = 30


@pytest.fixture
def devices(make_device):
    """devices(name, **kw): a Device of the test's hub (encrypted when `encryption` is "sealed")."""
    return make_device


def _fill(d: Device, n: int = N) -> None:
    for i in range(n):
        d.write(f"d{i % 3}/f{i:02}.txt", f"file {i}")


def _delete_all(d: Device) -> None:
    for p in list(d.files()):
        (d.root / p).unlink()


def test_cli_remote_mass_delete_pauses_until_confirmed(tmp_path, hub_url):
    """Through the `shoal` command, as a user meets it."""
    docs = tmp_path / "alpha-docs"
    cfg = tmp_path / "alpha.yaml"
    cfg.write_text(yaml.safe_dump({
        "device": {"name": "alpha"}, "state_dir": str(tmp_path / "alpha-state"), "hub": {"url": str(hub_url)},
        "folders": [{"id": "docs", "path": str(docs)}]}))
    docs.mkdir()
    for i in range(N):
        (docs / f"f{i:02}.txt").write_text(f"file {i}")
    shoal(cfg, "sync", "--now", check=True)

    rogue = Device(tmp_path, "rogue", hub_url)
    rogue.sync()
    assert len(rogue.files()) == N
    _delete_all(rogue)
    assert rogue.sync(allow_mass_delete=True).ok  # the rogue confirms its own deletions

    proc = shoal(cfg, "sync", "--now")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "mass-delete" in proc.stderr and "--allow-mass-delete" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len([p for p in docs.iterdir() if p.is_file()]) == N, "remote deletions were applied"
    status = json.loads(shoal(cfg, "status", "--json", check=True).stdout)
    [folder] = status["folders"]
    assert folder["paused"].startswith("mass-delete: 30 of 30 files")
    assert "rogue" in folder["paused"] and folder["files"] == N
    human = shoal(cfg, "status").stdout
    assert "PAUSED: mass-delete" in human

    proc = shoal(cfg, "sync", "--now")  # still paused: nothing happens without the go-ahead
    assert proc.returncode == 1 and len([p for p in docs.iterdir() if p.is_file()]) == N

    proc = shoal(cfg, "sync", "--now", "--allow-mass-delete")
    assert proc.returncode == 0, proc.stderr
    assert [p for p in docs.iterdir() if p.is_file()] == []
    trashed = [p for p in (docs / ".shoal" / "trash").rglob("*") if p.is_file()]
    assert len(trashed) == N, "the deleted files must be kept in the trash"
    status = json.loads(shoal(cfg, "status", "--json", check=True).stdout)
    assert status["folders"][0]["paused"] is None and status["folders"][0]["files"] == 0
    rogue.close()


@both_ways
def test_deletions_spread_over_pages_are_counted_together(devices, monkeypatch):
    a, b = devices("alpha"), devices("beta")
    _fill(a)
    sync_all([a, b])
    cursor = b.store.folder("docs").pull_cursor
    _delete_all(a)
    assert a.sync(allow_mass_delete=True).ok
    monkeypatch.setattr(engine, "PULL_PAGE", 4)  # no page holds more than 4 deletions
    report = b.sync()
    assert not report.ok and report.folders[0].paused.startswith("mass-delete")
    assert len(b.files()) == N
    assert b.store.folder("docs").pull_cursor == cursor, "the cursor moved past unapplied deletions"
    assert b.trash() == []
    assert b.sync().folders[0].paused  # stays paused
    assert len(b.files()) == N
    assert b.sync(allow_mass_delete=True).ok
    assert b.files() == {} and len(b.trash()) == N
    assert_converged([a, b])


@both_ways
def test_mass_replacement_with_empty_files_is_guarded(devices):
    a, b = devices("alpha"), devices("beta")
    _fill(a)
    sync_all([a, b])
    for p in a.files():
        a.write(p, b"")
    assert a.sync().ok  # for the scan these are edits, not deletions
    report = b.sync()
    assert report.folders[0].paused and report.folders[0].paused.startswith("mass-delete")
    assert all(b.read(p) != b"" for p in b.files())
    assert b.sync(allow_mass_delete=True).ok
    assert all(b.read(p) == b"" for p in b.files())
    assert len(b.trash()) == N
    assert_converged([a, b])


def test_deletions_under_the_threshold_apply(devices):
    a, b = devices("alpha"), devices("beta")
    _fill(a)
    sync_all([a, b])
    for p in sorted(a.files())[:15]:  # exactly half: not more than half
        (a.root / p).unlink()
    assert a.sync().ok
    assert b.sync().ok
    assert len(b.files()) == N - 15 and len(b.trash()) == 15
    assert_converged([a, b])


@both_ways
def test_a_renamed_directory_is_not_a_mass_delete(devices):
    """A rename sends a deletion per file, but each content reappears at its new path."""
    a, b = devices("alpha"), devices("beta")
    for i in range(N):
        a.write(f"old/f{i:02}.txt", f"file {i}")
    sync_all([a, b])
    (a.root / "old").rename(a.root / "new")
    assert a.sync(allow_mass_delete=True).ok  # the scan guard counts a rename as deletions
    assert b.sync().ok
    assert sorted(b.files()) == [f"new/f{i:02}.txt" for i in range(N)]
    assert_converged([a, b])


def test_a_paused_folder_does_not_pull_what_came_later(devices):
    a, b = devices("alpha"), devices("beta")
    _fill(a)
    sync_all([a, b])
    _delete_all(a)
    assert a.sync(allow_mass_delete=True).ok
    a.write("late.txt", "written after the mass delete")
    assert a.sync().ok
    assert b.sync().folders[0].paused
    assert not (b.root / "late.txt").exists()
    assert len(b.files()) == N
    assert b.sync(allow_mass_delete=True).ok
    assert sorted(b.files()) == ["late.txt"]
