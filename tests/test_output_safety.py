"""Terminal escapes from another device (issue 9, item 11): device names, paths and error
messages that come from the hub or the disk never reach the terminal or the logs raw.

A rogue device of the space pushes rows whose paths carry an OSC 52 sequence (which sets the
clipboard of many terminals) and an OSC 0 title sequence; the victim runs `shoal` as a user
would, and no control character of that data appears in its human output, on stderr or in its
log file. JSON output keeps the data exact (JSON escapes control characters itself).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from pathlib import Path

import pytest
import yaml

from tests.daemons import shoal
from shoal.hub.client import open_hub

OSC52 = "\x1b]52;c;ZXZpbA==\x07"  # sets the clipboard to "evil"
OSC0 = "\x1b]0;pwned\x1b\\"  # sets the window title
C1_CSI = "\x9b2J"  # clears the screen on terminals that honour 8-bit C1
CONTENT = b"payload of a rogue device"
SHA = hashlib.sha256(CONTENT).hexdigest()
# Any C0 control but newline, DEL, or C1: what must not be in human output.
RAW_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def _no_raw_control(text: str) -> None:
    found = RAW_CONTROL.search(text)
    assert found is None, f"raw control character {found.group()!r} in output: {text!r}"


@pytest.fixture
def rogue(hub):
    """Another device of the space, with its own device login from `shoal hub add-device`,
    pushing whatever it likes through the hub API."""
    client = open_hub(hub.login_dsn(hub.add_device("rogue")), None, str(uuid.uuid4()), str(uuid.uuid4()))
    client.register("rogue")
    yield client
    client.close()


def _row(seq: int, path: str) -> dict:
    """A file row; its content must be on the hub (`rogue.put_small_contents`)."""
    return {"seq": seq, "path": path, "kind": "file", "size": len(CONTENT), "mtime_ns": 1_700_000_000 * 10**9,
            "sha256": SHA, "target": None, "deleted": False, "base": None}


def _link(seq: int, path: str) -> dict:
    """A symlink row: needs no content on the hub."""
    return {"seq": seq, "path": path, "kind": "symlink", "size": 6, "mtime_ns": 1_700_000_000 * 10**9,
            "sha256": hashlib.sha256(b"target").hexdigest(), "target": "target", "deleted": False,
            "base": None}


@pytest.fixture
def victim(tmp_path, hub) -> Path:
    """The config of a device that runs `shoal` as a user does, with its own device login."""
    login = hub.add_device("victim")
    path = tmp_path / "victim" / "config.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({
        "device": {"name": "victim"}, "state_dir": str(tmp_path / "victim" / "state"),
        "hub": {"url": hub.device_url(login), "password_file": str(login.password_file)},
        "folders": [{"id": "docs", "path": str(tmp_path / "victim" / "docs")}],
        "log": {"level": "info"}}))
    path.chmod(0o600)
    return path


def test_refused_path_with_osc52_is_escaped_in_sync_status_and_logs(victim, rogue):
    hostile = f"clip{OSC52}.txt"
    rogue.push("docs", [_link(1, hostile)])

    sync = shoal(victim, "sync", "--now")
    _no_raw_control(sync.stdout)
    _no_raw_control(sync.stderr)

    status = shoal(victim, "status")
    assert status.returncode == 0, status.stderr
    _no_raw_control(status.stdout)
    _no_raw_control(status.stderr)
    assert "clip\\x1b]52;c;ZXZpbA==\\x07.txt" in status.stdout  # shown, visibly escaped

    as_json = json.loads(shoal(victim, "status", "--json").stdout)  # JSON keeps the exact path
    errors = as_json["folders"][0]["errors"]
    assert [e["path"] for e in errors] == [hostile] and errors[0]["kind"] == "refused"


def test_hostile_paths_are_escaped_in_dupes(victim, rogue):
    rogue.put_small_contents([(SHA, CONTENT)], 128 * 1024)
    rogue.push("docs", [_row(1, f"a{OSC0}.txt"), _row(2, f"b{C1_CSI}.txt")])
    shoal(victim, "sync", "--now")  # registers the victim
    out = shoal(victim, "dupes")
    assert out.returncode == 0, out.stderr
    _no_raw_control(out.stdout)
    assert "a\\x1b]0;pwned\\x1b\\.txt" in out.stdout and "b\\x9b2J.txt" in out.stdout


def test_hostile_conflict_names_are_escaped(victim):
    from shoal.config import load_config
    from shoal.localstore import open_store

    assert shoal(victim, "scan").returncode == 0
    store = open_store(load_config(victim).state_dir)
    try:
        store.record_conflict("docs", f"x{OSC52}.txt", f"x.sync-conflict{OSC0}.txt",
                              f"win{OSC0}", f"lose{C1_CSI}", 1_700_000_000)
    finally:
        store.close()
    out = shoal(victim, "conflicts")
    assert out.returncode == 0, out.stderr
    _no_raw_control(out.stdout)
    assert "x\\x1b]52;c;ZXZpbA==\\x07.txt" in out.stdout and "lose\\x9b2J" in out.stdout


def test_device_names_are_escaped_in_devices_output():
    from shoal.cli import device_lines

    rows = [{"device_id": "d1", "name": f"phone{OSC0}", "last_push_at": None, "last_pull_at": None,
             "behind": 0, "last_error": f"refused {OSC52}", "silent": True}]
    text = "\n".join(device_lines(rows))
    _no_raw_control(text)
    assert "phone\\x1b]0;pwned\\x1b\\" in text and "refused \\x1b]52;" in text


def test_devices_command_never_prints_a_hostile_name_raw(victim, hub):
    """Whether the hub refuses such a name (it should) or still stores it, `shoal devices`
    prints no raw escape. (Registered through the owner's connection, which may act for any
    device.)"""
    from shoal.errors import ShoalError

    owner = open_hub(hub.owner_url, None, str(uuid.uuid4()), str(uuid.uuid4()))
    try:
        try:
            owner.register(f"evil{OSC0}")
            stored = True
        except ShoalError:
            stored = False
    finally:
        owner.close()
    out = shoal(victim, "devices")
    assert out.returncode == 0, out.stderr
    _no_raw_control(out.stdout)
    if stored:
        assert "evil\\x1b]0;pwned\\x1b\\" in out.stdout


def test_error_lines_on_stderr_are_escaped(tmp_path):
    config = tmp_path / f"conf{OSC52}" / "config.yaml"
    out = shoal(config, "scan")
    assert out.returncode == 2
    _no_raw_control(out.stderr)
    assert "conf\\x1b]52;c;ZXZpbA==\\x07" in out.stderr


def test_log_records_are_escaped_in_the_file_and_on_stderr(tmp_path, capsys):
    from shoal.app import setup_logging

    state = tmp_path / "state"
    state.mkdir()
    try:
        setup_logging("info", state, to_file=True)
        log = logging.getLogger("shoal.test")
        log.warning("docs: %s: path refused", f"clip{OSC52}.txt")
        log.warning(f"message itself {OSC0}")
        try:
            raise ValueError(f"bad {C1_CSI} thing")
        except ValueError:
            log.exception("failed on %s", f"x{OSC52}")
    finally:
        setup_logging("warning", None)
    text = (state / "logs" / "shoal.log").read_text(encoding="utf-8")
    err = capsys.readouterr().err
    for out in (text, err):
        _no_raw_control(out)
        assert "clip\\x1b]52;c;ZXZpbA==\\x07.txt" in out
        assert "message itself \\x1b]0;pwned\\x1b\\" in out
        assert "bad \\x9b2J thing" in out and "Traceback" in out
