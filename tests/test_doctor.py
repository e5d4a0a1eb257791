"""`shoal doctor`: every check on a healthy setup is ok; each broken thing gives a FAIL or WARN
line naming it, with a fix, and the exit status says whether anything failed."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

from shoal.config import default_config_text, load_config
from shoal.ops import doctor
from shoal.ops.doctor import FAIL, OK, WARN, Finding

CLOSED_PORT_URL = "postgresql://nobody@127.0.0.1:1/x"


def _setup(tmp_path: Path, hub_url: str, *, extra: str = "", make_store: bool = True,
           seen: bool = True) -> Path:
    """A config with one folder `docs` and a state dir in tmp_path; with `make_store`, a store
    that has seen the folder and its marker (as after a first scan)."""
    state, folder = tmp_path / "state", tmp_path / "docs"
    state.mkdir(mode=0o700)
    state.chmod(0o700)
    folder.mkdir()
    config_path = tmp_path / "config.yaml"
    config_path.write_text(default_config_text("laptop", hub_url, [("docs", str(folder))])
                           + f"state_dir: {state}\n" + extra, encoding="utf-8")
    if make_store:
        from shoal.app import LocalDevice
        from shoal.scan.scanner import check_marker

        device = LocalDevice(load_config(config_path))
        try:
            if seen:
                assert check_marker(device.store, "docs", folder) is None
        finally:
            device.close()
    return config_path


def _run(config_path: Path) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = doctor.run_doctor(config_path, out=out)
    return code, out.getvalue().splitlines()


def _line(lines: list[str], check: str) -> tuple[str, str | None]:
    """The line of `check` and the fix line after it (None if there is none)."""
    for i, line in enumerate(lines):
        if line[6:].startswith(check + ":"):
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            return line, (nxt if nxt.startswith("      fix: ") else None)
    raise AssertionError(f"no line for {check!r} in {lines}")


def test_healthy_setup_is_all_ok(tmp_path, hub_url):
    config_path = _setup(tmp_path, hub_url)
    code, lines = _run(config_path)
    assert code == 0, lines
    assert lines and all(line.startswith("ok    ") for line in lines), lines
    checks = {line[6:].split(":")[0] for line in lines}
    assert {"config", "state dir", "store", "folder docs", "hub", "hub schema"} <= checks
    if sys.platform.startswith("linux") and doctor.read_max_watches() is not None:
        assert "watch limit" in checks


def test_corrupt_store_fails_and_is_left_untouched(tmp_path, hub_url):
    config_path = _setup(tmp_path, hub_url, make_store=False)
    store = tmp_path / "state" / "shoal.db"
    garbage = os.urandom(64) + b"this is not an SQLite database" * 100
    store.write_bytes(garbage)
    code, lines = _run(config_path)
    assert code == 1
    line, fix = _line(lines, "store")
    assert line.startswith("FAIL  store: ") and str(store) in line
    assert fix is not None and "move" in fix and str(store) in fix
    assert store.read_bytes() == garbage
    assert sorted(p.name for p in store.parent.iterdir()) == ["shoal.db"]
    # the other checks still ran; without a store, a missing marker may or may not matter
    assert _line(lines, "hub")[0].startswith("ok    ")
    line, fix = _line(lines, "folder docs")
    assert line.startswith("WARN") and "cannot tell" in line and "printf" in fix and "shoal scan" in fix


def test_missing_marker_of_a_seen_folder_fails_naming_the_folder(tmp_path, hub_url):
    config_path = _setup(tmp_path, hub_url)
    marker = tmp_path / "docs" / ".shoal" / "folder-id"
    marker.unlink()
    code, lines = _run(config_path)
    assert code == 1
    line, fix = _line(lines, "folder docs")
    assert line.startswith("FAIL  folder docs: ") and str(marker) in line and "paused" in line
    assert fix is not None and str(marker) in fix and "docs" in fix
    assert not marker.exists()  # doctor repairs nothing


def test_missing_marker_of_a_new_folder_warns(tmp_path, hub_url):
    config_path = _setup(tmp_path, hub_url, seen=False)
    code, lines = _run(config_path)
    assert code == 0
    line, fix = _line(lines, "folder docs")
    assert line.startswith("WARN  folder docs: ") and "marker" in line
    assert fix is not None and "shoal scan" in fix


def test_marker_of_another_folder_and_missing_folder_fail(tmp_path, hub_url):
    config_path = _setup(tmp_path, hub_url)
    (tmp_path / "docs" / ".shoal" / "folder-id").write_text("photos\n")
    code, lines = _run(config_path)
    assert code == 1
    assert "'photos'" in _line(lines, "folder docs")[0] and _line(lines, "folder docs")[0].startswith("FAIL")
    import shutil

    shutil.rmtree(tmp_path / "docs")
    code, lines = _run(config_path)
    line, fix = _line(lines, "folder docs")
    assert code == 1 and line.startswith("FAIL") and "missing" in line and fix


def test_paused_folder_warns_with_the_reason(tmp_path, hub_url):
    config_path = _setup(tmp_path, hub_url)
    from shoal.localstore import open_store

    store = open_store(tmp_path / "state")
    store.update_folder("docs", paused="mass delete: 40 of 50 files")
    store.close()
    code, lines = _run(config_path)
    line, fix = _line(lines, "folder docs")
    assert code == 0
    assert line.startswith("WARN") and "mass delete: 40 of 50 files" in line
    assert "--allow-mass-delete" in fix


def test_invalid_config_fails_with_file_and_line_and_stops(tmp_path):
    config_path = tmp_path / "config.yaml"
    config_path.write_text("device:\n  name: x\nfolders:\n  - id: a\n    path: /tmp/a\n    mode: both\n")
    code, lines = _run(config_path)
    assert code == 1
    assert lines[0].startswith("FAIL  config: config.yaml:6: folders[0].mode: must be one of")
    assert lines[1].startswith("      fix: ") and str(config_path) in lines[1]
    assert len(lines) == 2  # nothing else is checked against a config that is not there


def test_missing_config_fails_and_says_shoal_init(tmp_path):
    code, lines = _run(tmp_path / "nope.yaml")
    assert code == 1 and lines[0].startswith("FAIL  config: ") and "shoal init" in lines[1]


def test_unreachable_hub_fails_with_fix(tmp_path):
    config_path = _setup(tmp_path, CLOSED_PORT_URL)
    code, lines = _run(config_path)
    assert code == 1
    line, fix = _line(lines, "hub")
    assert line.startswith("FAIL  hub: ") and "unreachable" in line
    assert fix is not None and "hub.url" in fix
    assert [x for x in lines if x.startswith("FAIL")] == [line]


def test_embedded_hub_not_running_warns_and_is_not_started(tmp_path):
    config_path = _setup(tmp_path, "embedded")
    code, lines = _run(config_path)
    line, fix = _line(lines, "hub")
    assert code == 0 and line.startswith("WARN") and "not running" in line and "shoal run" in fix
    assert not (tmp_path / "state" / "hub").exists()


@pytest.mark.parametrize("mode", [0o770, 0o755, 0o705])
def test_state_dir_open_to_others_fails(tmp_path, hub_url, mode):
    """Another local user may not read the store's directory (nor the hub's, nor the logs)."""
    config_path = _setup(tmp_path, hub_url)
    (tmp_path / "state").chmod(mode)
    code, lines = _run(config_path)
    line, fix = _line(lines, "state dir")
    assert code == 1 and line.startswith("FAIL") and f"{mode:04o}" in line
    assert fix == f"      fix: chmod 700 {tmp_path / 'state'}"


def test_store_readable_by_others_fails(tmp_path, hub_url):
    config_path = _setup(tmp_path, hub_url)
    store = tmp_path / "state" / "shoal.db"
    store.chmod(0o644)
    code, lines = _run(config_path)
    line, fix = _line(lines, "store permissions")
    assert code == 1 and line.startswith("FAIL") and "0644" in line and str(store) in line
    assert fix is not None and fix.startswith("      fix: chmod 600 ") and str(store) in fix
    store.chmod(0o600)
    code, lines = _run(config_path)
    assert code == 0 and _line(lines, "store permissions")[0].startswith("ok"), lines


def test_hub_socket_dir_check(tmp_path):
    sock = tmp_path / "sock"
    sock.mkdir(mode=0o700)
    assert doctor.socket_dir_check(sock, {os.geteuid()}).status == OK
    sock.chmod(0o777)
    f = doctor.socket_dir_check(sock, {os.geteuid()})
    assert f.status == FAIL and "0777" in f.detail and str(sock) in f.detail
    assert "restart" in f.fix or "chmod 700" in f.fix
    sock.chmod(0o700)
    os.chown(sock, 65534, 65534)
    f = doctor.socket_dir_check(sock, {os.geteuid()})
    assert f.status == FAIL and "owned by" in f.detail


@pytest.mark.parametrize("hba, status", [
    ("local all all trust\nhost all all 127.0.0.1/32 trust\n", FAIL),
    ("# trust in a comment\nlocal all postgres peer map=shoal\nlocal all all scram-sha-256\n", OK),
])
def test_hub_auth_check(tmp_path, hba, status):
    (tmp_path / "pg_hba.conf").write_text(hba)
    f = doctor.hub_auth_check(tmp_path)
    assert f.status == status
    if status == FAIL:
        assert "trust" in f.detail and f.fix


def test_missing_state_dir_warns_and_is_not_created(tmp_path, hub_url):
    config_path = _setup(tmp_path, hub_url, make_store=False)
    (tmp_path / "state").rmdir()
    code, lines = _run(config_path)
    assert _line(lines, "state dir")[0].startswith("WARN")
    assert _line(lines, "store")[0].startswith("WARN")
    assert not (tmp_path / "state").exists()


def test_password_file_with_loose_mode_fails(tmp_path, hub_url):
    pw = tmp_path / "hub-password"
    pw.write_text("secret-value")
    pw.chmod(0o644)
    config_path = _setup(tmp_path, hub_url)
    text = config_path.read_text().replace("  # password_file:", f"  password_file: {pw}\n  # was:")
    config_path.write_text(text)
    code, lines = _run(config_path)
    assert code == 1
    line, fix = _line(lines, "hub password")
    assert line.startswith("FAIL") and "0600" in line and "secret-value" not in "\n".join(lines)
    assert fix == f"      fix: chmod 600 {pw}"
    pw.chmod(0o600)
    code, lines = _run(config_path)
    assert code == 0 and _line(lines, "hub password")[0].startswith("ok")


def test_passphrase_file_with_loose_mode_fails(tmp_path, hub_url):
    secret = tmp_path / "docs.pass"
    secret.write_text("the folder's passphrase")
    secret.chmod(0o640)
    config_path = _setup(tmp_path, hub_url)
    text = config_path.read_text().replace(
        "    ignore: []", f"    ignore: []\n    encryption:\n      passphrase_file: {secret}", 1)
    config_path.write_text(text)
    code, lines = _run(config_path)
    assert code == 1
    line, fix = _line(lines, "folder docs passphrase")
    assert line.startswith("FAIL") and "0600" in line and "passphrase" not in line.split("docs.pass")[-1]
    assert "the folder's passphrase" not in "\n".join(lines)
    assert fix == f"      fix: chmod 600 {secret}"
    secret.chmod(0o600)
    code, lines = _run(config_path)
    assert code == 0 and _line(lines, "folder docs passphrase")[0].startswith("ok")


@pytest.mark.parametrize("max_watches, dirs, status", [
    (8192, 0, OK),
    (8192, 100, OK),
    (8192, 6553, OK),   # 80% of 8192 is 6553.6
    (8192, 6554, WARN),
    (8192, 10000, WARN),
    (524288, 400000, OK),
    (524288, 420000, WARN),
])
def test_inotify_check(max_watches, dirs, status):
    f = doctor.inotify_check(max_watches, dirs)
    assert f.status == status and f.check == "watch limit"
    assert str(dirs) in f.detail and str(max_watches) in f.detail
    if status == WARN:
        assert "sudo sysctl fs.inotify.max_user_watches=" in f.fix and "/etc/sysctl.d/" in f.fix
        suggested = int(f.fix.split("max_user_watches=")[1].split(";")[0])
        assert suggested >= max(524288, 2 * dirs)
    else:
        assert f.fix is None


def test_inotify_over_the_limit_says_rescans_cover_the_rest():
    assert "periodic rescan" in doctor.inotify_check(1000, 1001).detail


def test_count_dirs_skips_shoal(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "c").mkdir()
    (tmp_path / ".shoal" / "trash" / "x").mkdir(parents=True)
    assert doctor.count_dirs([tmp_path, tmp_path / "missing"]) == 4


@pytest.mark.parametrize("path, real, warned", [
    ("/storage/emulated/0/DCIM", "/storage/emulated/0/DCIM", True),
    ("/sdcard/Music", "/storage/self/primary/Music", True),
    ("/sdcard", "/sdcard", True),
    ("/home/u/storage/dcim", "/storage/emulated/0/DCIM", True),
    ("/data/data/com.termux/files/home/storage/shared", "/data/data/com.termux/files/home/storage/shared",
     False),  # home below is /home/u
    ("/home/u/storagebox/x", "/home/u/storagebox/x", False),
    ("/home/u/Shoal", "/home/u/Shoal", False),
    ("/mnt/storage", "/mnt/storage", False),
])
def test_android_storage_check(path, real, warned):
    f = doctor.android_storage_check("photos", path, real, "/home/u")
    if warned:
        assert f.status == WARN and f.check == "folder photos" and "rescan" in f.detail and f.fix
    else:
        assert f is None


@pytest.mark.parametrize("version, latest, status", [
    (None, 1, FAIL), (1, 1, OK), (1, 2, WARN), (3, 2, FAIL),
])
def test_hub_schema_check(version, latest, status):
    f = doctor.hub_schema_check(version, latest)
    assert f.status == status
    assert (f.fix is None) == (status == OK)


def test_format_finding_and_exit_status(tmp_path, monkeypatch):
    assert doctor.format_finding(Finding(OK, "store", "fine")) == ["ok    store: fine"]
    assert doctor.format_finding(Finding(WARN, "hub", "slow", "wait")) == ["WARN  hub: slow", "      fix: wait"]
    monkeypatch.setattr(doctor, "diagnose", lambda _p: [Finding(OK, "a", "x"), Finding(WARN, "b", "y", "z")])
    assert doctor.run_doctor(tmp_path, out=io.StringIO()) == 0
    monkeypatch.setattr(doctor, "diagnose", lambda _p: [Finding(FAIL, "a", "x", "y")])
    assert doctor.run_doctor(tmp_path, out=io.StringIO()) == 1


def test_remote_hub_without_sslmode_fails_in_doctor(tmp_path):
    config_path = _setup(tmp_path, "postgresql://u@hub.invalid:1/shoal?connect_timeout=1", make_store=False)
    code, lines = _run(config_path)
    line, fix = _line(lines, "hub tls")
    assert code == 1 and line.startswith("FAIL") and "sslmode" in line
    assert fix is not None and "sslmode=verify-full" in fix


def test_password_in_a_readable_config_fails_in_doctor(tmp_path):
    config_path = _setup(tmp_path, "postgresql://u:s3cret-pw@127.0.0.1:1/shoal", make_store=False)
    config_path.chmod(0o644)
    code, lines = _run(config_path)
    line, fix = _line(lines, "hub password")
    assert code == 1 and line.startswith("FAIL") and "0644" in line
    assert fix is not None and "chmod 600" in fix and "password_file" in fix
    assert "s3cret-pw" not in "\n".join(lines)
