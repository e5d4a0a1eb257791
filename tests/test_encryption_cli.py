"""Encrypted folders as a user runs them, through `shoal` with device logins made by `shoal hub
add-device`: a wrong passphrase or a passphrase file others may read pauses the folder with a
clear reason and writes nothing; `shoal folder passphrase` re-wraps the key (the content stays as
it is) and points the config at the new file; encryption is refused for a folder with plaintext
history; a plain device never syncs an encrypted folder."""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.fixtures.cli import CliDevice

pytestmark = pytest.mark.slow


def _ok(proc) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr.strip()}"
    assert "Traceback" not in proc.stderr
    return proc.stdout


def _failed(proc, *words: str) -> str:
    """One clear line on stderr (no traceback), exit 1, naming `words`."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in proc.stderr, proc.stderr
    return proc.stderr


def _paused(device: CliDevice) -> str | None:
    return {f["id"]: f for f in device.json("status")["folders"]}["docs"]["paused"]


@pytest.fixture
def pair(tmp_path, hub):
    devices = []
    for name in ("laptop", "phone"):
        d = CliDevice(tmp_path, name)
        d.init(hub, hub.add_device(name))
        devices.append(d)
    return hub, devices[0], devices[1]


def _blocks(hub) -> tuple[int, int]:
    with psycopg.connect(hub.owner_url) as conn:
        return conn.execute("SELECT count(*), coalesce(sum(octet_length(data)), 0) FROM shoal.blocks").fetchone()


def test_wrong_passphrase_and_loose_file_pause_the_folder_and_write_nothing(pair):
    hub, laptop, phone = pair
    laptop.encrypt("the right one")
    laptop.folder.mkdir(parents=True, exist_ok=True)
    (laptop.folder / "secret.txt").write_text("meet at noon")
    _ok(laptop.sync())

    phone.encrypt("a wrong one")
    _failed(phone.sync(), "wrong passphrase", "docs")
    assert phone.tree() == {}
    assert _paused(phone).startswith("encryption: ")
    assert "wrong passphrase" in _paused(phone)

    secret = phone.encrypt("the right one", mode=0o644)
    _failed(phone.sync(), "chmod 600")
    assert phone.tree() == {} and "0644" in _paused(phone)

    secret.chmod(0o600)
    _ok(phone.sync())
    assert phone.tree() == {"secret.txt": b"meet at noon"}
    assert _paused(phone) is None


def test_passphrase_change_rewraps_the_key_without_reencrypting(pair, tmp_path):
    hub, laptop, phone = pair
    laptop.encrypt("old passphrase")
    phone.encrypt("old passphrase")
    laptop.folder.mkdir(parents=True, exist_ok=True)
    (laptop.folder / "a.txt").write_text("alpha" * 1000)
    (laptop.folder / "b.bin").write_bytes(bytes(range(256)) * 2000)
    (laptop.folder / "b copy.bin").write_bytes(bytes(range(256)) * 2000)
    _ok(laptop.sync())
    _ok(phone.sync())
    before = _blocks(hub)
    [dupe] = phone.json("dupes")  # the hub knows sealed paths; the device shows them opened
    assert sorted(dupe["places"]) == ["docs:b copy.bin", "docs:b.bin"]

    new = tmp_path / "new-passphrase"
    new.write_text("new passphrase\n")
    new.chmod(0o644)
    proc = laptop.run("folder", "passphrase", "docs", "--new-file", str(new))
    assert proc.returncode == 2 and "chmod 600" in proc.stderr  # a loose file is refused: nothing changed
    new.chmod(0o600)
    _ok(laptop.run("folder", "passphrase", "docs", "--new-file", str(new)))
    assert str(new) in laptop.config.read_text()
    assert _blocks(hub) == before  # only the wrapping changed

    (laptop.folder / "c.txt").write_text("after the change")
    _ok(laptop.sync())  # this device reads the new passphrase file now
    _failed(phone.sync(), "wrong passphrase")  # the old passphrase no longer opens the key
    assert "c.txt" not in phone.tree()
    phone.encrypt("new passphrase")
    _ok(phone.sync())
    assert phone.tree() == laptop.tree()


def test_encryption_refused_for_a_folder_with_plaintext_history(pair):
    hub, laptop, phone = pair
    laptop.folder.mkdir(parents=True, exist_ok=True)
    (laptop.folder / "plain.txt").write_text("already on the hub in the clear")
    _ok(laptop.sync())
    phone.encrypt("too late")
    _failed(phone.sync(), "unencrypted history", "new id")
    assert phone.tree() == {}


def test_a_plain_device_never_syncs_an_encrypted_folder(pair):
    hub, laptop, phone = pair
    laptop.encrypt("sealed")
    laptop.folder.mkdir(parents=True, exist_ok=True)
    (laptop.folder / "x.txt").write_text("x")
    _ok(laptop.sync())
    _failed(phone.sync(), "encrypted on the hub", "passphrase_file")
    assert phone.tree() == {}
    # nor can it push into it: its changes stay waiting, nothing readable reaches the hub
    phone.folder.mkdir(parents=True, exist_ok=True)
    (phone.folder / "leak.txt").write_text("must not reach the hub in the clear")
    _failed(phone.sync(), "encrypted on the hub")
    with psycopg.connect(hub.owner_url) as conn:
        dump = json.dumps(conn.execute("SELECT array_agg(c::text) FROM shoal.changes c").fetchone()[0])
    assert "leak.txt" not in dump
