"""History at the hub (issue 12): `shoal log`, `shoal restore` (a version, a point in time, a
whole folder) and `shoal revert` (a device since a time), with real devices through a real hub,
plain and end-to-end encrypted. A restore is an ordinary change: it reaches the other devices,
and every file it replaces goes to a trash first."""

from __future__ import annotations

import os

import pytest

from shoal.errors import UsageError
from shoal.sync.history import History
from tests.devices import Device, assert_converged, sync_all
from tests.fixtures.devices import TEST_PASSPHRASE


@pytest.fixture(params=["plain", "sealed"])
def encryption(request):
    return request.param


@pytest.fixture
def trio(tmp_path, hub, encryption):
    passphrase = TEST_PASSPHRASE if encryption == "sealed" else None
    ds = [Device(tmp_path, n, hub, passphrase=passphrase) for n in ("laptop", "phone", "tablet")]
    yield ds
    for d in ds:
        d.close()


def _latest_time(d: Device):
    return History(d.engine).log(None, None, 1)[0].time


def test_log_lists_every_version_newest_first(trio):
    laptop, phone, _ = trio
    for text in ("one", "two", "three"):
        laptop.write("notes.txt", text)
        laptop.sync()
    (laptop.root / "notes.txt").unlink()
    laptop.sync()
    entries = History(phone.engine).log(None, "notes.txt", 10)
    assert [e.change.deleted for e in entries] == [True, False, False, False]
    assert [e.change.size for e in entries[1:]] == [5, 3, 3]
    assert {e.change.device_name for e in entries} == {"laptop"}
    assert entries[0].time >= entries[-1].time
    assert [e.change.path for e in History(phone.engine).log(None, None, 2)] == ["notes.txt", "notes.txt"]


def test_restore_of_a_deleted_file_reaches_another_device(trio):
    laptop, phone, tablet = trio
    laptop.write("thesis.tex", "chapter one")
    sync_all(trio)
    (phone.root / "thesis.tex").unlink()
    sync_all(trio)
    assert not (laptop.root / "thesis.tex").exists()
    [deleted, kept] = History(laptop.engine).log(None, "thesis.tex", 5)
    report = History(tablet.engine).restore(None, path="thesis.tex", version=kept.change.version)
    assert [r["path"] for r in report.restored] == ["thesis.tex"] and not report.failed
    sync_all(trio)
    assert assert_converged(trio)
    assert laptop.read("thesis.tex") == b"chapter one"
    assert History(phone.engine).log(None, "thesis.tex", 1)[0].change.device_name == "tablet"


def test_restoring_a_version_puts_the_current_file_in_the_trash(trio):
    laptop, phone, _ = trio
    laptop.write("a.txt", "good")
    sync_all(trio)
    good = History(laptop.engine).log(None, "a.txt", 1)[0]
    phone.write("a.txt", "broken by an app")
    sync_all(trio)
    History(laptop.engine).restore(None, path="a.txt", at=good.time)
    sync_all(trio)
    assert phone.read("a.txt") == b"good"
    assert any(t.startswith("a~") or t.startswith("a.txt") for t in laptop.trash()), laptop.trash()
    assert any("a" in t for t in phone.trash())
    with pytest.raises(UsageError):
        History(laptop.engine).restore(None, path="a.txt", version=10**9)


def test_folder_point_in_time_after_a_mass_edit(trio):
    laptop, phone, tablet = trio
    for i in range(12):
        laptop.write(f"docs/{i}.txt", f"original {i}")
    laptop.write("keep.bin", os.urandom(300_000))
    sync_all(trio)
    before = _latest_time(laptop)
    state = laptop.files()
    for i in range(12):  # a bad day: everything rewritten, some deleted, junk added
        phone.write(f"docs/{i}.txt", f"ENCRYPTED BY RANSOMWARE {i}")
    (phone.root / "keep.bin").unlink()
    phone.write("README_PAY.txt", "send coins")
    sync_all(trio)
    dry = History(tablet.engine).restore(None, at=before, dry_run=True)
    assert len(dry.restored) == 13 and dry.removed == ["README_PAY.txt"]
    assert tablet.read("docs/0.txt") == b"ENCRYPTED BY RANSOMWARE 0"  # a dry run changes nothing
    report = History(tablet.engine).restore(None, at=before)
    assert not report.failed
    sync_all(trio)
    assert assert_converged(trio) and laptop.files() == state
    assert "README_PAY.txt" in " ".join(phone.trash())


def test_revert_one_device_while_another_devices_later_edit_survives(trio):
    laptop, phone, tablet = trio
    laptop.write("a.txt", "a0")
    laptop.write("b.txt", "b0")
    laptop.write("c.txt", "c0")
    sync_all(trio)
    since = _latest_time(laptop)
    phone.write("a.txt", "a bad")
    phone.write("b.txt", "b bad")
    phone.write("new.txt", "bad new file")
    (phone.root / "c.txt").unlink()
    sync_all(trio)
    tablet.write("b.txt", "b fixed by hand")  # after the phone: left alone
    sync_all(trio)
    dry = History(laptop.engine).restore(None, device="phone", since=since, dry_run=True)
    assert dry.left_alone == ["b.txt"] and dry.removed == ["new.txt"]
    assert sorted(r["path"] for r in dry.restored) == ["a.txt", "c.txt"]
    History(laptop.engine).restore(None, device="phone", since=since)
    sync_all(trio)
    heads = assert_converged(trio)
    assert sorted(heads) == ["a.txt", "b.txt", "c.txt"]
    assert (phone.read("a.txt"), phone.read("b.txt"), phone.read("c.txt")) == (b"a0", b"b fixed by hand", b"c0")


# -- as a user runs it: the `shoal` command, device logins, a daemon -------------------------------


def _ok(proc) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr.strip()}"
    assert "Traceback" not in proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_log_restore_and_revert_through_the_cli(tmp_path, hub):
    import json
    from datetime import datetime, timezone

    from tests.fixtures.cli import CliDevice

    laptop, phone = CliDevice(tmp_path, "laptop"), CliDevice(tmp_path, "phone")
    for d in (laptop, phone):
        d.init(hub, hub.add_device(d.name))
    laptop.folder.mkdir(parents=True, exist_ok=True)
    (laptop.folder / "plan.md").write_text("v1")
    _ok(laptop.sync())
    (laptop.folder / "plan.md").write_text("version two")
    _ok(laptop.sync())
    _ok(phone.sync())
    log = json.loads(_ok(phone.run("log", str(phone.folder / "plan.md"), "--json")))
    assert [e["size"] for e in log] == [11, 2] and {e["device"] for e in log} == {"laptop"}
    assert {"version", "time", "device", "size", "sha256", "deleted"} <= set(log[0])
    assert "plan.md" in _ok(phone.run("log", "--folder", "docs"))

    _ok(phone.run("restore", "plan.md", "--folder", "docs", "--version", str(log[1]["version"])))
    assert (phone.folder / "plan.md").read_text() == "v1"
    _ok(laptop.sync())
    assert (laptop.folder / "plan.md").read_text() == "v1"

    since = datetime.now(timezone.utc).isoformat()  # after the phone's restore: that one stays
    (phone.folder / "junk.txt").write_text("junk")
    (phone.folder / "plan.md").write_text("scribbled")
    _ok(phone.sync())
    dry = json.loads(_ok(laptop.run("revert", "--device", "phone", "--since", since, "--dry-run", "--json")))
    assert dry["removed"] == ["junk.txt"] and [r["path"] for r in dry["restored"]] == ["plan.md"]
    _ok(laptop.run("revert", "--device", "phone", "--since", since))
    _ok(phone.sync())
    assert (phone.folder / "plan.md").read_text() == "v1" and not (phone.folder / "junk.txt").exists()

    bad = laptop.run("restore", "plan.md", "--at", "yesterday-ish")
    assert bad.returncode == 2 and "ISO 8601" in bad.stderr


@pytest.mark.slow
def test_restore_goes_through_a_running_daemon(make_daemon):
    import json

    from tests.daemons import wait_for
    from tests.fixtures.cli import run_shoal

    d = make_daemon("laptop")
    d.write_config()
    d.start()
    d.root.mkdir(parents=True, exist_ok=True)
    (d.root / "a.txt").write_text("first")
    wait_for(lambda: json.loads(_ok(run_shoal("--config", str(d.config), "log", "a.txt", "--json"))), timeout=30,
             what="the first version on the hub")
    (d.root / "a.txt").write_text("second")
    wait_for(lambda: len(json.loads(_ok(run_shoal("--config", str(d.config), "log", "a.txt", "--json")))) == 2,
             timeout=30, what="the second version on the hub")
    first = json.loads(_ok(run_shoal("--config", str(d.config), "log", "a.txt", "--json")))[1]
    out = _ok(run_shoal("--config", str(d.config), "restore", "a.txt", "--version", str(first["version"])))
    assert "restored to" in out
    assert (d.root / "a.txt").read_text() == "first"
    assert "restore requested over the control socket" in d.log_text()


def test_a_failed_sync_reaches_the_other_devices(tmp_path, hub):
    """`shoal devices` shows a device's last error: failures go to the hub's sync log too."""
    import subprocess
    import sys

    from shoal.errors import HubError

    laptop = Device(tmp_path, "laptop", hub, space="lab")
    phone = Device(tmp_path, "phone", hub, space="lab")
    try:
        laptop.write("one.txt", "1")
        laptop.sync()
        quota = subprocess.run([sys.executable, "-m", "shoal", "hub", "quota", "lab", "--changes", "1",
                                "--url", hub.owner_url], capture_output=True, text=True, timeout=60)
        assert quota.returncode == 0, quota.stderr
        laptop.write("two.txt", "2")
        with pytest.raises(HubError, match="quota"):
            laptop.sync()
        phone.sync()
        conn = phone.hub()
        try:
            rows = {r["name"]: r for r in conn.devices()}
        finally:
            conn.close()
        assert "quota" in (rows["laptop"]["last_error"] or ""), rows["laptop"]
        assert rows["phone"]["last_error"] is None
    finally:
        laptop.close()
        phone.close()


def test_a_device_away_longer_than_the_hub_keeps_history_resyncs_from_the_heads(tmp_path, hub, encryption):
    """A device offline across a garbage collection that removed changes it had not pulled
    resyncs from the current heads: a deletion it missed is applied (to its trash), its
    local-only file is kept and pushed, nothing deleted comes back; its status says so."""
    import psycopg

    from shoal.app import status_report
    from shoal.hub.gc import collect_garbage

    passphrase = TEST_PASSPHRASE if encryption == "sealed" else None
    laptop, phone, old = (Device(tmp_path, n, hub, passphrase=passphrase) for n in ("laptop", "phone", "old"))
    devices = [laptop, phone, old]
    try:
        laptop.write("gone.txt", "deleted while the old phone was away")
        laptop.write("kept.txt", "v1")
        sync_all(devices)
        old.write("local-only.txt", "made offline")  # not synced yet
        (laptop.root / "gone.txt").unlink()
        laptop.write("kept.txt", "v2")
        sync_all([laptop, phone])
        with psycopg.connect(hub.owner_url) as conn:
            report = collect_garbage(conn, keep=0, grace=0)  # the old phone is not active: not waited for
        assert report.tombstones >= 1 and report.changes >= 2  # gone.txt's versions, kept.txt's v1
        old.sync()
        assert not (old.root / "gone.txt").exists() and any(t.startswith("gone") for t in old.trash())
        assert old.read("kept.txt") == b"v2" and old.read("local-only.txt") == b"made offline"
        sync_all(devices)
        heads = assert_converged(devices)
        assert sorted(heads) == ["kept.txt", "local-only.txt"]
        assert laptop.read("local-only.txt") == b"made offline"

        class Dev:  # what status_report reads of a LocalDevice
            config = old.config
            store = old.store
        assert status_report(Dev(), check_hub=False)["folders"][0]["resynced"]
    finally:
        for d in devices:
            d.close()
