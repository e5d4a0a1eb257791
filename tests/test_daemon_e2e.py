"""Two real daemons (subprocesses) on one hub: SPEC "Commands" (run, sync --now, status) and
the daemon's promises: prompt delivery, offline edits, live config reload, clean stop. The
offline-edits test also runs with end-to-end encrypted folders (`both_ways`): `shoal run` with an
`encryption:` folder delivering promptly and resuming after an outage (interrupted transfers of
sealed folders are tested at the engine level, test_sync_faults, and by test_kill9)."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.daemons import content, shoal, wait_for
from tests.fixtures.devices import both_ways

pytestmark = pytest.mark.slow


@pytest.fixture
def pair(make_daemon):
    """Two daemons, not started (encrypted folders when the test's `encryption` says "sealed")."""
    return make_daemon("alpha"), make_daemon("beta")


def test_file_written_on_a_appears_on_b_without_any_command(pair):
    a, b = pair
    a.start()
    b.start()
    (a.root / "hello.txt").write_text("from alpha")
    wait_for(lambda: content(b.root / "hello.txt") == b"from alpha", what="hello.txt on beta")
    (b.root / "sub").mkdir()
    (b.root / "sub" / "reply.txt").write_text("from beta")
    wait_for(lambda: content(a.root / "sub" / "reply.txt") == b"from beta", what="reply on alpha")
    assert a.stop() == 0 and b.stop() == 0


def test_sync_now_goes_through_the_running_daemon(pair):
    a, _ = pair
    a.start()
    (a.root / "x.txt").write_text("x")
    proc = shoal(a.config, "sync", "--now")
    assert proc.returncode == 0, proc.stderr
    assert "docs:" in proc.stdout
    wait_for(lambda: "sync requested over the control socket" in a.log_text(), what="daemon log line")
    status = a.status()
    assert status["daemon"]["running"] is True and status["daemon"]["pid"] == a.proc.pid
    assert status["folders"][0]["files"] == 1 and status["folders"][0]["waiting"] == 0


def test_second_daemon_on_the_same_state_dir_is_refused(pair):
    a, _ = pair
    a.start()
    proc = shoal(a.config, "run", timeout=30)
    assert proc.returncode == 1
    assert f"pid {a.proc.pid}" in proc.stderr and "already running" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_invalid_config_edit_keeps_daemon_running_and_valid_edit_adds_folder(pair, tmp_path):
    a, b = pair
    a.start()
    b.start()
    good = a.config.read_text()
    a.write_config(good + "bogus_key: 1\n")
    wait_for(lambda: a.status().get("config_error"), what="config error in status")
    status = a.status()
    assert any("bogus_key" in line and "unknown key" in line for line in status["config_error"])
    assert a.proc.poll() is None
    # a valid edit adding a folder on both devices starts syncing it, without a restart
    for d in (a, b):
        d.folders["photos"] = str(d.base / "photos")
        d.write_config()
    wait_for(lambda: any(f["id"] == "photos" for f in a.status()["folders"]), what="photos folder on alpha")
    wait_for(lambda: any(f["id"] == "photos" for f in b.status()["folders"]), what="photos folder on beta")
    assert "config_error" not in a.status()
    (a.base / "photos" / "cat.jpg").write_bytes(b"\xff\xd8 not really a cat")
    wait_for(lambda: content(b.base / "photos" / "cat.jpg") == b"\xff\xd8 not really a cat",
             what="cat.jpg on beta")


@both_ways
def test_edits_while_hub_is_down_arrive_after_it_restarts(tmp_path, make_daemon):
    import psycopg

    from tests.fixtures.hubs import TestHub
    from tests.pgserver import TcpPostgres

    server = TcpPostgres(tmp_path / "srv")  # a server of its own, to stop and start
    try:
        hub = TestHub(server.test_server(), "hub", tmp_path / "logins").create()
        hub.init()
        a = make_daemon("alpha", hub, interval="1s")
        b = make_daemon("beta", hub, interval="1s")
        a.start()
        b.start()
        try:
            (a.root / "before.txt").write_text("before")
            wait_for(lambda: content(b.root / "before.txt") == b"before", what="before.txt on beta")
            server.stop()
            for i in range(5):
                (a.root / f"offline-{i}.txt").write_text(f"offline {i}")
            wait_for(lambda: a.status()["hub"]["reachable"] is False, what="alpha to notice the hub is down")
            wait_for(lambda: a.status()["folders"][0]["waiting"] == 5, what="5 changes waiting on alpha")
            assert a.status()["hub"]["unreachable_since"]
            server.start()
            wait_for(lambda: all(content(b.root / f"offline-{i}.txt") == f"offline {i}".encode()
                                 for i in range(5)), timeout=90, what="offline edits on beta")
            with psycopg.connect(hub.owner_url) as conn:  # (sealed paths: count them all)
                n = conn.execute("SELECT count(*) FROM shoal.changes").fetchone()[0]
            assert n == 1 + 5  # before.txt and the offline edits, nothing pushed twice
        finally:
            for d in (a, b):
                if d.proc is not None:
                    d.stop(signal.SIGKILL)
    finally:
        server.cleanup()


def test_sigterm_during_large_transfer_leaves_no_partial_file_and_resumes(pair):
    a, b = pair
    big = os.urandom(96 * 1024 * 1024)
    a.root.mkdir(parents=True, exist_ok=True)
    (a.root / "big.bin").write_bytes(big)
    assert shoal(a.config, "sync", "--now").returncode == 0
    b.start(wait=False)  # the download starts at once: watch for it, not for the status
    part_dir = b.root / ".shoal" / "tmp"
    wait_for(lambda: part_dir.exists() and any(p.stat().st_size > 0 for p in part_dir.glob("*.part")),
             timeout=60, interval=0.005, what="a partial download on beta")
    assert b.stop(signal.SIGTERM) == 0
    assert not (b.root / "big.bin").exists()  # never a half-written file in the folder
    b.start()
    wait_for(lambda: content(b.root / "big.bin") == big, timeout=60, what="big.bin complete on beta")
    assert not list(part_dir.glob("*.part"))


def test_status_while_the_daemon_is_busy_syncing(pair):
    """`shoal status` asked during a long cycle always answers and the daemon lives on. (The race
    this guards against — status sharing the cycle's connection, ThreadingViolationError — shows
    only sometimes; the status now reads through a connection of its own.)"""
    a, _ = pair
    a.root.mkdir(parents=True)
    for i in range(4000):
        (a.root / f"f{i:04}.txt").write_text(f"file {i}")
    a.start()
    answers = []
    while len(answers) < 15 or answers[-1]["folders"][0]["waiting"]:
        proc = shoal(a.config, "status", "--json")
        assert proc.returncode == 0, proc.stderr  # every answer, also mid-cycle
        answers.append(json.loads(proc.stdout))
        assert answers[-1]["daemon"]["running"] and a.proc.poll() is None
        if len(answers) > 400:
            break
    assert any(s["folders"][0]["waiting"] or s["folders"][0]["files"] < 4000 for s in answers), \
        "no status was asked while the cycle ran"
    wait_for(lambda: a.status()["folders"][0]["files"] == 4000 and a.status()["folders"][0]["waiting"] == 0,
             timeout=60, what="the first sync to finish")
    assert a.proc.poll() is None


def test_a_file_closed_after_writing_syncs_without_waiting_for_the_debounce(make_daemon):
    """inotify's close-after-write says a file is complete: it goes at once; a file still being
    written (no close yet) waits out the debounce time."""
    a, b = make_daemon("alpha", debounce="5s"), make_daemon("beta")
    a.start()
    b.start()
    a.root.mkdir(parents=True, exist_ok=True)
    time.sleep(0.5)  # the first cycles done
    open_file = open(a.root / "still-open.log", "wb")
    try:
        open_file.write(b"being written")
        open_file.flush()
        started = time.monotonic()
        with open(a.root / "saved.txt", "wb") as f:  # a save: create, write, close
            f.write(b"saved")
        wait_for(lambda: content(b.root / "saved.txt") == b"saved", timeout=4.0, what="saved.txt on beta")
        assert time.monotonic() - started < 4.0
        assert not (b.root / "still-open.log").exists(), "a file still open went before the debounce time"
    finally:
        open_file.close()
    wait_for(lambda: content(b.root / "still-open.log") == b"being written", timeout=20, what="the log, once closed")
    assert a.stop() == 0 and b.stop() == 0


def test_a_daemon_keeps_its_hub_connection_from_one_change_to_the_next(pair, hub):
    """Connecting and logging in again for every cycle cost 4 round trips on each side of a
    change (~0.3 s across a 40 ms link): a daemon keeps its connection between cycles (its
    listener's and one for syncing), and the next change goes through the same sessions."""
    import psycopg

    a, b = pair
    a.start()
    b.start()

    def sessions(d) -> frozenset[int]:
        with psycopg.connect(hub.owner_url, autocommit=True) as conn:
            return frozenset(r[0] for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE usename = %s", (d.login.role,)))

    seen = []
    for i in range(3):
        (a.root / f"note-{i}.txt").write_text(f"note {i}")
        wait_for(lambda: content(b.root / f"note-{i}.txt") == f"note {i}".encode(), what=f"note-{i} on beta")
        # A's sessions: its listener's and the kept one (a cycle may still be finishing: wait)
        seen.append((wait_for(lambda: len(s := sessions(a)) == 2 and s, what="alpha's two sessions"),
                     wait_for(lambda: len(s := sessions(b)) == 2 and s, what="beta's two sessions")))
    # Kept from one change to the next. (A kept connection may still be dropped when the server
    # sent something on it between cycles — seen once in CI between the first two changes, cause
    # not found: see the issue note — so one new session among the three is tolerated.)
    assert seen[0] == seen[1] or seen[1] == seen[2], f"every change went through a new connection: {seen}"
    assert a.stop() == 0 and b.stop() == 0
