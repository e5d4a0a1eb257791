"""Directories sync as entries of their own (SPEC: empty directories are created, renamed and
deleted), end to end through the `shoal` command on device logins of a real hub."""

from __future__ import annotations

import os

import pytest

from tests.daemons import wait_for
from tests.fixtures.cli import CliDevice
from tests.fixtures.devices import TEST_PASSPHRASE, both_ways


def _device(tmp_path, hub, name: str, encryption: str = "plain") -> CliDevice:
    d = CliDevice(tmp_path, name)
    d.init(hub, hub.add_device(name))
    if encryption == "sealed":
        d.encrypt(TEST_PASSPHRASE)
    d.folder.mkdir(parents=True, exist_ok=True)
    return d


def _sync(*devices: CliDevice) -> None:
    for d in devices:
        proc = d.sync()
        assert proc.returncode == 0, f"{d.name}: {proc.stderr}"


def _dirs(d: CliDevice) -> set[str]:
    out = set()
    for dirpath, dirnames, _ in os.walk(d.folder):
        rel = os.path.relpath(dirpath, d.folder)
        if rel == ".":
            dirnames[:] = [n for n in dirnames if n != ".shoal"]
        else:
            out.add(rel)
    return out


@both_ways
def test_empty_directories_are_created_renamed_and_deleted(tmp_path, hub, encryption):
    a, b = _device(tmp_path, hub, "alpha", encryption), _device(tmp_path, hub, "beta", encryption)
    (a.folder / "inbox").mkdir()
    (a.folder / "projects" / "2027" / "drafts").mkdir(parents=True)
    (a.folder / "projects" / "notes.txt").write_text("notes")
    _sync(a, b)
    assert _dirs(b) == {"inbox", "projects", "projects/2027", "projects/2027/drafts"}
    assert b.tree() == {"projects/notes.txt": b"notes"}

    os.rename(a.folder / "inbox", a.folder / "outbox")
    os.rmdir(a.folder / "projects" / "2027" / "drafts")
    _sync(a, b, a)
    assert _dirs(b) == {"outbox", "projects", "projects/2027"}
    assert _dirs(a) == _dirs(b)

    # A directory emptied and removed on one device goes on the other, files first.
    os.remove(b.folder / "projects" / "notes.txt")
    os.rmdir(b.folder / "projects" / "2027")
    os.rmdir(b.folder / "projects")
    _sync(b, a, b)
    assert _dirs(a) == _dirs(b) == {"outbox"}
    assert a.tree() == {}


def test_a_directory_deleted_elsewhere_is_kept_where_it_holds_a_new_file(tmp_path, hub):
    a, b = _device(tmp_path, hub, "alpha"), _device(tmp_path, hub, "beta")
    (a.folder / "shared" / "old.txt").parent.mkdir()
    (a.folder / "shared" / "old.txt").write_text("old")
    _sync(a, b)
    (a.folder / "shared" / "old.txt").unlink()
    (a.folder / "shared").rmdir()
    (b.folder / "shared" / "new.txt").write_text("written on beta meanwhile")
    _sync(a, b, a, b)
    # Nothing is lost: beta's new file and its directory stay, and come back to alpha.
    assert (b.folder / "shared" / "new.txt").read_text() == "written on beta meanwhile"
    assert (a.folder / "shared" / "new.txt").read_text() == "written on beta meanwhile"
    assert not (a.folder / "shared" / "old.txt").exists() and not (b.folder / "shared" / "old.txt").exists()
    assert _dirs(a) == _dirs(b) == {"shared"}


def test_a_file_and_a_directory_trade_places(tmp_path, hub):
    a, b = _device(tmp_path, hub, "alpha"), _device(tmp_path, hub, "beta")
    (a.folder / "thing").write_text("a file first")
    _sync(a, b)
    (a.folder / "thing").unlink()
    (a.folder / "thing").mkdir()
    _sync(a, b)
    assert (b.folder / "thing").is_dir()
    trash = b.folder / ".shoal" / "trash"
    assert [p.read_text() for p in trash.iterdir() if p.name.startswith("thing~")] == ["a file first"]

    # And back: the (empty) directory replaced by a file.
    (a.folder / "thing").rmdir()
    (a.folder / "thing").write_text("a file again")
    _sync(a, b)
    assert (b.folder / "thing").read_text() == "a file again"
    assert a.json("status")["folders"][0]["waiting"] == b.json("status")["folders"][0]["waiting"] == 0


@pytest.mark.slow
def test_running_daemons_follow_an_empty_directory_made_and_removed(pair):
    a, b = pair
    a.start()
    b.start()
    (a.root / "new" / "empty").mkdir(parents=True)
    wait_for(lambda: (b.root / "new" / "empty").is_dir(), what="new/empty on beta")
    (a.root / "new" / "empty").rmdir()
    wait_for(lambda: not (b.root / "new" / "empty").exists(), what="new/empty gone from beta")
    assert (b.root / "new").is_dir()
    assert a.stop() == 0 and b.stop() == 0
