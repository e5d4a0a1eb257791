"""Phone-grade storage end to end through the `shoal` command (issue 13): the exec bit, a folder
on a real case-insensitive filesystem (a loop-mounted exFAT image, like an SD card), case
collisions and case-only renames. Every device is a device login of a real hub."""

from __future__ import annotations

import os
import stat

import pytest

from tests.fixtures.cli import CliDevice
from tests.fixtures.devices import TEST_PASSPHRASE, both_ways


def _device(tmp_path, hub, name: str, encryption: str, folder=None) -> CliDevice:
    d = CliDevice(tmp_path, name, folder)
    d.init(hub, hub.add_device(name))
    if encryption == "sealed":
        d.encrypt(TEST_PASSPHRASE)
    return d


def _sync(*devices: CliDevice) -> None:
    for d in devices:
        proc = d.sync()
        assert proc.returncode == 0, f"{d.name}: {proc.stderr}"


def _is_exec(path) -> bool:
    return bool(os.stat(path).st_mode & stat.S_IXUSR)


@both_ways
def test_the_exec_bit_syncs_both_ways_without_moving_content(tmp_path, hub, encryption):
    a, b = (_device(tmp_path, hub, n, encryption) for n in ("alpha", "beta"))
    a.folder.mkdir(parents=True, exist_ok=True)
    script, plain = a.folder / "run.sh", a.folder / "notes.txt"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    plain.write_text("just text")
    plain.chmod(0o644)
    _sync(a, b)
    assert _is_exec(b.folder / "run.sh") and not _is_exec(b.folder / "notes.txt")
    # Other permission bits do not travel: only the exec bit.
    assert stat.S_IMODE(os.stat(b.folder / "notes.txt").st_mode) & 0o022 == 0

    # A chmod alone is a change (no content moves): it arrives as one on the other device.
    script.chmod(0o644)
    (b.folder / "notes.txt").chmod(0o700)
    inode = os.stat(b.folder / "run.sh").st_ino
    _sync(a, b, a)
    assert not _is_exec(b.folder / "run.sh") and _is_exec(a.folder / "notes.txt")
    assert os.stat(b.folder / "run.sh").st_ino == inode, "a mode change rewrote the file"
    assert not a.run("status").stdout.count("conflict") > 1


@pytest.mark.slow
def test_a_folder_without_modes_keeps_the_exec_bit_in_its_index(tmp_path, hub, exfat_dir):
    """exFAT has no modes: every file there looks executable. The exec bit from elsewhere is
    kept in the index and never "changed" back, and nothing there is pushed as executable."""
    a = _device(tmp_path, hub, "alpha", "plain")
    card = _device(tmp_path, hub, "card", "plain", folder=exfat_dir / "docs")
    a.folder.mkdir(parents=True, exist_ok=True)
    (a.folder / "run.sh").write_text("#!/bin/sh\n")
    (a.folder / "run.sh").chmod(0o755)
    (a.folder / "notes.txt").write_text("text")
    (a.folder / "notes.txt").chmod(0o644)
    _sync(a, card)
    (card.folder / "photo.jpg").write_bytes(b"\xff\xd8 a photo")
    _sync(card, a, card, a)
    assert _is_exec(a.folder / "run.sh"), "the card turned the exec bit off"
    assert not _is_exec(a.folder / "notes.txt"), "the card turned the exec bit on"
    assert not _is_exec(a.folder / "photo.jpg"), "a file from the card arrived executable"
    log = a.json("log", "--folder", "docs")
    assert sorted(e["path"] for e in log) == ["notes.txt", "photo.jpg", "run.sh"], log


@pytest.mark.slow
@both_ways
def test_two_names_that_differ_in_case_both_survive_on_a_case_insensitive_card(tmp_path, hub, exfat_dir,
                                                                                 encryption):
    a = _device(tmp_path, hub, "alpha", encryption)
    card = _device(tmp_path, hub, "card", encryption, folder=exfat_dir / "docs")
    a.folder.mkdir(parents=True, exist_ok=True)
    (a.folder / "photo.jpg").write_bytes(b"the lower-case photo")
    (a.folder / "Photo.JPG").write_bytes(b"THE UPPER-CASE PHOTO")
    _sync(a, card)
    on_card = card.tree()
    # Both contents are on the card, one at its path and one as a conflict copy.
    assert sorted(on_card.values()) == [b"THE UPPER-CASE PHOTO", b"the lower-case photo"], on_card
    copies = [p for p in on_card if ".sync-conflict-" in p]
    assert len(copies) == 1, on_card
    conflicts = card.json("conflicts")
    assert conflicts and any(c["path"] in ("photo.jpg", "Photo.JPG") for c in conflicts), conflicts
    status = card.run("status")
    assert "collid" in status.stdout or "conflict" in status.stdout, status.stdout
    # Syncing goes on, and the card's next cycles neither lose nor re-push anything.
    (card.folder / "later.txt").write_text("later")
    _sync(card, a, card, a)
    assert (a.folder / "later.txt").read_text() == "later"
    assert (a.folder / "photo.jpg").read_bytes() == b"the lower-case photo"
    assert (a.folder / "Photo.JPG").read_bytes() == b"THE UPPER-CASE PHOTO"
    assert sorted(card.tree().values()).count(b"the lower-case photo") == 1
    assert card.json("status")["folders"][0]["waiting"] == 0


@pytest.mark.slow
@both_ways
def test_a_case_only_rename_arrives_as_a_rename_everywhere(tmp_path, hub, exfat_dir, encryption):
    a = _device(tmp_path, hub, "alpha", encryption)
    card = _device(tmp_path, hub, "card", encryption, folder=exfat_dir / "docs")
    c = _device(tmp_path, hub, "gamma", encryption)
    a.folder.mkdir(parents=True, exist_ok=True)
    (a.folder / "readme.txt").write_text("read me")
    _sync(a, card, c)
    assert card.tree() == c.tree() == {"readme.txt": b"read me"}

    os.rename(a.folder / "readme.txt", a.folder / "README.txt")
    _sync(a, card, c, a)
    for d in (a, card, c):
        assert d.tree() == {"README.txt": b"read me"}, d.name
        assert os.listdir(d.folder) == [".shoal", "README.txt"] or sorted(os.listdir(d.folder)) == [
            ".shoal", "README.txt"], d.name
    assert card.json("conflicts") == []

    # And back, made on the card itself this time.
    os.rename(card.folder / "README.txt", card.folder / "Readme.txt")
    _sync(card, a, c, card)
    for d in (a, card, c):
        assert d.tree() == {"Readme.txt": b"read me"}, d.name


@pytest.mark.slow
def test_a_file_under_a_directory_named_in_another_case_is_kept_beside(tmp_path, hub, exfat_dir):
    """`Docs/new.txt` from a case-sensitive device, where the card has `docs/`: written into the
    card's `docs/` as a conflict copy, never indexed under a name the card's disk does not show
    (which its next scan would push as a rename)."""
    a = _device(tmp_path, hub, "alpha", "plain")
    card = _device(tmp_path, hub, "card", "plain", folder=exfat_dir / "docs")
    a.folder.mkdir(parents=True, exist_ok=True)
    (a.folder / "docs").mkdir()
    (a.folder / "docs" / "old.txt").write_text("old")
    _sync(a, card)
    (a.folder / "Docs").mkdir()
    (a.folder / "Docs" / "new.txt").write_text("new")
    _sync(a, card, card, a)
    assert sorted(os.listdir(card.folder)) == [".shoal", "docs"]
    names = sorted(os.listdir(card.folder / "docs"))
    assert names[1] == "old.txt" and names[0].startswith("new.sync-conflict-"), names
    assert (a.folder / "Docs" / "new.txt").read_text() == "new"  # nothing renamed or deleted on alpha
    assert (a.folder / "docs" / "old.txt").read_text() == "old"


@pytest.mark.slow
def test_a_symlink_the_card_cannot_hold_is_reported_once_not_retried(tmp_path, hub, exfat_dir):
    a = _device(tmp_path, hub, "alpha", "plain")
    card = _device(tmp_path, hub, "card", "plain", folder=exfat_dir / "docs")
    a.folder.mkdir(parents=True, exist_ok=True)
    (a.folder / "notes.txt").write_text("notes")
    (a.folder / "latest").symlink_to("notes.txt")
    _sync(a, card)  # exit 0: the link is reported, everything else applied
    assert card.tree() == {"notes.txt": b"notes"}
    errors = card.json("status")["folders"][0]["errors"]
    assert [(e["path"], e["kind"]) for e in errors] == [("latest", "refused")], errors
    assert "symlink" in errors[0]["message"]
    _sync(card, card)
    assert card.json("status")["folders"][0]["errors"][0]["retries"] == errors[0]["retries"]
