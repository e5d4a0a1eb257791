"""`shoal pause [--folder ID] [--for DURATION]` / `shoal resume [--folder ID]` (SPEC "Commands",
issue 13 item 5), end to end: real daemons (subprocesses) with device logins on a real hub.
A paused folder keeps watching and indexing (its changes wait in the outbox) but nothing is
pushed or pulled; the pause survives a daemon restart, ends by itself with --for, and
`shoal status` shows it (and until when)."""

from __future__ import annotations

import json
import time

import pytest

from tests.daemons import content, shoal, wait_for

pytestmark = pytest.mark.slow


def _folder(status: dict, folder_id: str = "docs") -> dict:
    return next(f for f in status["folders"] if f["id"] == folder_id)


def _stays_away(path, seconds: float = 1.5) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert not path.exists(), f"{path} arrived although the sender is paused"
        time.sleep(0.1)


def _synced_once(a, b) -> None:
    (a.root / "first.txt").write_text("first")
    wait_for(lambda: content(b.root / "first.txt") == b"first", what="first.txt on beta")


def test_a_paused_folder_indexes_but_does_not_sync_until_resumed(pair):
    a, b = pair
    a.start()
    b.start()
    _synced_once(a, b)
    proc = shoal(a.config, "pause", "--folder", "docs")
    assert proc.returncode == 0, proc.stderr
    assert "paused" in proc.stdout and "docs" in proc.stdout
    (a.root / "held.txt").write_text("held back")
    wait_for(lambda: _folder(a.status())["waiting"] == 1, what="held.txt indexed on alpha (outbox)")
    _stays_away(b.root / "held.txt")
    status = a.status()
    assert _folder(status)["user_paused"] == {"until": None, "whole_device": False}
    assert status["paused"] is None
    text = shoal(a.config, "status").stdout
    assert "paused by the user" in text and "shoal resume" in text
    # a pull is held back too: beta's edit does not reach alpha
    (b.root / "from-beta.txt").write_text("beta")
    _stays_away(a.root / "from-beta.txt", 1.0)
    # `sync --now` on a paused folder: paused means paused (exit 1, one line saying how to resume)
    proc = shoal(a.config, "sync", "--now", "--folder", "docs")
    assert proc.returncode == 1
    assert "paused" in proc.stderr and "shoal resume" in proc.stderr and "Traceback" not in proc.stderr
    assert not (b.root / "held.txt").exists()
    proc = shoal(a.config, "resume", "--folder", "docs")
    assert proc.returncode == 0, proc.stderr
    wait_for(lambda: content(b.root / "held.txt") == b"held back", what="held.txt on beta after resume")
    wait_for(lambda: content(a.root / "from-beta.txt") == b"beta", what="from-beta.txt on alpha after resume")
    assert _folder(a.status())["user_paused"] is None


def test_a_pause_for_a_while_ends_by_itself(pair):
    a, b = pair
    a.start()
    b.start()
    _synced_once(a, b)
    proc = shoal(a.config, "pause", "--for", "3s")
    assert proc.returncode == 0, proc.stderr
    (a.root / "later.txt").write_text("later")
    wait_for(lambda: _folder(a.status())["waiting"] == 1, what="later.txt indexed on alpha")
    status = a.status()
    assert status["paused"]["until"] and _folder(status)["user_paused"]["whole_device"] is True
    assert "until" in shoal(a.config, "status").stdout
    assert not (b.root / "later.txt").exists()
    wait_for(lambda: content(b.root / "later.txt") == b"later", timeout=15, what="later.txt after the pause ended")
    status = a.status()
    assert status["paused"] is None and _folder(status)["user_paused"] is None


def test_a_pause_made_without_a_daemon_holds_after_it_starts(pair):
    a, b = pair
    proc = shoal(a.config, "pause")
    assert proc.returncode == 0, proc.stderr
    status = json.loads(shoal(a.config, "status", "--json").stdout)
    assert status["daemon"]["running"] is False
    assert status["paused"] == {"until": None} and _folder(status)["user_paused"]["whole_device"] is True
    a.root.mkdir(parents=True, exist_ok=True)
    (a.root / "offline.txt").write_text("written before the daemon ran")
    b.start()
    a.start()
    wait_for(lambda: _folder(a.status())["waiting"] == 1, what="offline.txt indexed on alpha")
    _stays_away(b.root / "offline.txt")
    # a daemon restart keeps the pause
    assert a.stop() == 0
    a.start()
    assert a.status()["paused"] == {"until": None}
    _stays_away(b.root / "offline.txt", 1.0)
    proc = shoal(a.config, "resume")
    assert proc.returncode == 0, proc.stderr
    wait_for(lambda: content(b.root / "offline.txt") == b"written before the daemon ran",
             what="offline.txt on beta after resume")


def test_pause_usage_errors_are_one_line_exit_2(pair):
    a, _ = pair
    for args in (("pause", "--folder", "nope"), ("resume", "--folder", "nope"), ("pause", "--for", "soon"),
                 ("pause", "--for", "0s")):
        proc = shoal(a.config, *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "nope" in shoal(a.config, "pause", "--folder", "nope").stderr
