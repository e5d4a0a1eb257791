"""Two devices set up as a user sets them up, with logins made by `shoal hub add-device`
(least-privilege roles, SCRAM over TCP, passwords in 0600 files): every command a device runs
works with such a login, end to end through the CLI; a revoked login is refused clearly.

Issue 9 item 1: the login `add-device` printed could not sync at all (`permission denied for
table schema_migrations`) while every test connected as the superuser."""

from __future__ import annotations

import os

import pytest

from tests.fixtures.cli import CliDevice

pytestmark = pytest.mark.slow


def _ok(proc) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr.strip()}"
    assert "Traceback" not in proc.stderr
    return proc.stdout


@pytest.fixture
def two(tmp_path, hub):
    logins = {name: hub.add_device(name) for name in ("laptop", "phone")}
    devices = {}
    for name, login in logins.items():
        d = CliDevice(tmp_path, name)
        d.init(hub, login)
        devices[name] = d
    return hub, logins, devices["laptop"], devices["phone"]


def test_device_logins_sync_both_ways_through_the_cli(two):
    hub, logins, laptop, phone = two
    # the configs name device logins, never the owner
    for d, login in ((laptop, logins["laptop"]), (phone, logins["phone"])):
        assert login.role != "postgres" and login.role in d.config.read_text()
        assert "postgres@" not in d.config.read_text() and login.password not in d.config.read_text()
    (laptop.folder / "notes.md").write_text("from the laptop")
    (laptop.folder / "sub").mkdir()
    (laptop.folder / "sub" / "deep.bin").write_bytes(os.urandom(300_000))
    out = _ok(laptop.sync())
    assert "docs: 3 pushed" in out  # two files and the directory sub/
    _ok(phone.sync())
    assert phone.tree() == laptop.tree()

    (phone.folder / "reply.md").write_text("from the phone")
    (phone.folder / "notes.md").write_text("edited on the phone")
    _ok(phone.sync())
    _ok(laptop.sync())
    assert laptop.tree() == phone.tree()
    assert laptop.tree()["notes.md"] == b"edited on the phone"
    assert set(laptop.tree()) == {"notes.md", "reply.md", "sub/deep.bin"}


def test_status_devices_and_dupes_work_for_a_device_login(two):
    hub, logins, laptop, phone = two
    (laptop.folder / "a.txt").write_text("same bytes")
    (laptop.folder / "b.txt").write_text("same bytes")
    _ok(laptop.sync())
    _ok(phone.sync())

    status = laptop.json("status")
    assert status["hub"]["reachable"] is True, status["hub"]
    [folder] = status["folders"]
    assert (folder["id"], folder["files"], folder["waiting"]) == ("docs", 2, 0)

    devices = {d["name"]: d for d in phone.json("devices")}
    assert set(devices) == {"laptop", "phone"}
    assert devices["laptop"]["behind"] == 0 and devices["phone"]["behind"] == 0
    human = phone.run("devices")
    assert "laptop" in _ok(human) and "phone" in human.stdout

    [dupe] = phone.json("dupes")
    assert sorted(dupe["places"]) == ["docs:a.txt", "docs:b.txt"]
    assert _ok(phone.run("conflicts", "--json")).strip() == "[]"


def test_a_revoked_device_login_cannot_sync_and_says_why(two):
    hub, logins, laptop, phone = two
    (phone.folder / "before.txt").write_text("before")
    _ok(phone.sync())

    proc = hub.revoke_device(logins["phone"])
    assert "revoked hub login" in proc.stdout, proc.stdout

    (phone.folder / "after.txt").write_text("after")
    proc = phone.sync()
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert "Traceback" not in err and err.count("\n") == 0 and err.startswith("shoal: "), err
    assert logins["phone"].role in err or "revoked" in err, err
    assert "not permitted to log in" in err or "revoked" in err, err
    assert logins["phone"].password not in err

    # the other device goes on syncing, and never sees what the revoked one wrote afterwards
    _ok(laptop.sync())
    assert laptop.tree() == {"before.txt": b"before"}
