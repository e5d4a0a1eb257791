"""Retention and garbage collection at the hub (issue 12 items 5 and 7): `shoal hub gc` and
`shoal hub stats`, run as the hub's owner through the CLI, as a user runs them.

Old versions, deleted files, and the contents and blocks nothing references any more go; the
current version of every file and every version an active device has not pulled yet stay;
devices keep converging afterwards (also one that joins after GC); a device login cannot run
GC; a `shoal hub gc` killed -9 at random points leaves a consistent hub; GC next to a device
that keeps pushing never takes what the push needs; an owner that is not superuser (row level
security) collects one space without touching another's blocks; the daemon that owns an
embedded hub runs it with `hub.keep_versions`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid

import psycopg
import pytest

from shoal.core.blocks import MIN_BLOCK
from shoal.errors import HubError
from shoal.hub.client import Hub, connect
from shoal.hub.schema import INTERNAL_FUNCTIONS
from tests.devices import assert_converged, sync_all
from tests.fixtures.cli import run_shoal
from tests.rows import file_row, sha

MiB = 1 << 20


# -- helpers ------------------------------------------------------------------------------------


def gc_url(url: str, *args: str) -> dict:
    """`shoal hub gc --url URL ARGS --json` -> its report."""
    proc = run_shoal("hub", "gc", "--url", url, *args, "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def gc(hub, *args: str) -> dict:
    """`shoal hub gc --url OWNER ARGS --json` -> its report."""
    return gc_url(hub.owner_url, *args)


def stats(hub) -> dict:
    """`shoal hub stats --url OWNER --json`."""
    proc = run_shoal("hub", "stats", "--url", hub.owner_url, "--json", check=True)
    return json.loads(proc.stdout)


def space_stats(hub, space: str = "default") -> dict:
    return next(s for s in stats(hub)["spaces"] if s["space"] == space)


def folder_stats(hub, folder: str = "docs", space: str = "default") -> dict:
    return next(f for f in space_stats(hub, space)["folders"] if f["folder_id"] == folder)


def assert_consistent(hub) -> None:
    """What a kill at any point must leave: every head's change is there (with its content and
    all its blocks, in its space, if it is a live file); the usage counters match the rows."""
    with hub.owner() as conn:
        assert conn.execute(
            "SELECT count(*) FROM shoal.heads h WHERE NOT EXISTS"
            " (SELECT 1 FROM shoal.changes c WHERE c.space = h.space AND c.id = h.version)").fetchone()[0] == 0
        missing = conn.execute(
            "SELECT h.path, u.sha FROM shoal.heads h"
            " JOIN shoal.contents ct ON ct.space = h.space AND ct.sha256 = h.sha256"
            " CROSS JOIN LATERAL unnest(ct.blocks) AS u(sha)"
            " WHERE NOT h.deleted AND h.kind IN ('file', 'exec')"
            "   AND NOT (EXISTS (SELECT 1 FROM shoal.block_spaces bs WHERE bs.space = h.space AND bs.sha256 = u.sha)"
            "            AND EXISTS (SELECT 1 FROM shoal.blocks b WHERE b.sha256 = u.sha))").fetchall()
        assert missing == []
        assert conn.execute(
            "SELECT count(*) FROM shoal.heads h WHERE NOT h.deleted AND h.kind IN ('file', 'exec') AND NOT EXISTS"
            " (SELECT 1 FROM shoal.contents ct WHERE ct.space = h.space AND ct.sha256 = h.sha256)").fetchone()[0] == 0
        # every content's blocks (not only the heads'): a change the devices still pull needs them
        assert conn.execute(
            "SELECT count(*) FROM shoal.contents ct CROSS JOIN LATERAL unnest(ct.blocks) AS u(sha)"
            " WHERE NOT EXISTS (SELECT 1 FROM shoal.block_spaces bs WHERE bs.space = ct.space AND bs.sha256 = u.sha)"
            ).fetchone()[0] == 0
        assert conn.execute(
            "SELECT count(*) FROM shoal.changes c WHERE NOT c.deleted AND c.kind IN ('file', 'exec') AND NOT EXISTS"
            " (SELECT 1 FROM shoal.contents ct WHERE ct.space = c.space AND ct.sha256 = c.sha256)").fetchone()[0] == 0
        assert conn.execute(
            "SELECT count(*) FROM shoal.block_spaces bs WHERE NOT EXISTS"
            " (SELECT 1 FROM shoal.blocks b WHERE b.sha256 = bs.sha256)").fetchone()[0] == 0
        assert conn.execute(
            "SELECT u.space, u.changes, (SELECT count(*) FROM shoal.changes c WHERE c.space = u.space),"
            "       u.bytes, (SELECT coalesce(sum(octet_length(b.data)), 0) FROM shoal.block_spaces bs"
            "                  JOIN shoal.blocks b USING (sha256) WHERE bs.space = u.space)"
            " FROM shoal.space_usage u WHERE u.changes <> (SELECT count(*) FROM shoal.changes c WHERE c.space = u.space)"
            "    OR u.bytes <> (SELECT coalesce(sum(octet_length(b.data)), 0) FROM shoal.block_spaces bs"
            "                    JOIN shoal.blocks b USING (sha256) WHERE bs.space = u.space)").fetchall() == []


def age_history(hub, interval: str) -> None:
    """Make everything the hub holds `interval` older (changes, contents, blocks): a test of
    retention cannot wait for days."""
    with hub.owner() as conn:
        conn.execute(f"UPDATE shoal.changes SET created_at = created_at - interval '{interval}'")
        conn.execute(f"UPDATE shoal.contents SET added_at = added_at - interval '{interval}'")
        conn.execute(f"UPDATE shoal.block_spaces SET added_at = added_at - interval '{interval}'")


def versions_of(hub, path: str) -> list[tuple[int, bool]]:
    with hub.owner() as conn:
        return conn.execute("SELECT id, deleted FROM shoal.changes WHERE path = %s ORDER BY id", (path,)).fetchall()


# -- GC frees what deletions left, and devices still converge -----------------------------------


def test_gc_keep_0s_after_deletions_frees_the_blocks_and_devices_converge(make_device, hub):
    a, b = make_device("alpha"), make_device("beta")
    big = os.urandom(3 * MiB + 17)
    a.write("media/big.bin", big)
    a.write("notes.txt", "v1")
    a.write("gone.txt", "to be deleted")
    for i in range(5):
        a.write(f"many/f{i}.txt", f"file {i}")
    sync_all([a, b])
    for v in range(2, 5):  # three more versions of notes.txt
        a.write("notes.txt", f"v{v}")
        a.sync()
    (a.root / "media/big.bin").unlink()
    (a.root / "gone.txt").unlink()
    sync_all([a, b])
    assert_converged([a, b])

    before = space_stats(hub)
    folder = folder_stats(hub)
    assert folder["tombstones"] == 2 and folder["files"] == 6 and folder["versions"] > folder["files"]
    assert before["bytes_stored"] >= len(big) + before["bytes_referenced"]

    report = gc(hub, "--keep", "0s", "--grace", "0s")
    assert report["dry_run"] is False and not report["skipped"]
    assert report["tombstones"] == 2
    # All but the current versions: of the 6 files and of the directories media/ and many/.
    assert report["changes"] == folder["versions"] - folder["files"] - 2
    assert report["blocks"] >= 4 and report["bytes"] >= len(big)  # big.bin was 4 blocks

    after = space_stats(hub)
    folder = folder_stats(hub)
    assert folder["files"] == 6 and folder["versions"] == 6 + 2 and folder["tombstones"] == 0  # + 2 directories
    assert folder["gc_horizon"] > 0
    assert before["bytes_stored"] - after["bytes_stored"] >= len(big)
    assert after["bytes_stored"] == after["bytes_referenced"] == after["usage_bytes"]
    assert after["usage_changes"] == 6 + 2
    assert_consistent(hub)
    assert_converged([a, b])

    # a second run finds nothing left
    again = gc(hub, "--keep", "0s", "--grace", "0s")
    assert (again["changes"], again["contents"], again["blocks"]) == (0, 0, 0)

    # syncing goes on: edits both ways, the big file back, a device joining after GC
    b.write("notes.txt", "v5 from beta")
    a.write("media/big.bin", big)
    sync_all([a, b])
    c = make_device("gamma")
    sync_all([a, b, c])
    heads = assert_converged([a, b, c])
    assert c.read("notes.txt") == b"v5 from beta" and c.read("media/big.bin") == big
    assert "gone.txt" not in heads
    assert_consistent(hub)


def test_current_versions_and_what_an_active_device_has_not_pulled_stay(make_device, hub):
    a, b = make_device("alpha"), make_device("beta")
    a.write("x.txt", "x1")
    a.write("y.txt", "y1")
    sync_all([a, b])  # beta's cursor: after x1 and y1
    a.write("x.txt", "x2")
    a.sync()
    a.write("x.txt", "x3")
    (a.root / "y.txt").unlink()
    a.sync()  # beta has not pulled x2, x3 nor the deletion of y
    age_history(hub, "2 days")  # ... made two days ago; beta pulled (its cursor) just now

    report = gc(hub, "--keep", "1d", "--grace", "0s")
    # x1 and y1 went (beta had pulled them; superseded two days ago); x2, x3 and y's deletion
    # stay for beta
    assert report["changes"] == 2 and report["tombstones"] == 0
    assert [deleted for _, deleted in versions_of(hub, "x.txt")] == [False, False]
    assert [deleted for _, deleted in versions_of(hub, "y.txt")] == [True]
    b.sync()
    assert_converged([a, b])
    assert b.read("x.txt") == b"x3" and not (b.root / "y.txt").exists()

    # now that beta has them: x2 goes, x3 (the current version) stays, y goes with its deletion
    age_history(hub, "2 days")
    report = gc(hub, "--keep", "1d", "--grace", "0s")
    assert report["tombstones"] == 1 and report["changes"] == 2  # x2, y's deletion
    assert len(versions_of(hub, "x.txt")) == 1 and versions_of(hub, "y.txt") == []
    assert_consistent(hub)
    assert_converged([a, b])

    # a version replaced just now is kept for a day, whatever the devices pulled
    a.write("x.txt", "x4")
    sync_all([a, b])
    report = gc(hub, "--keep", "1d", "--grace", "0s")
    assert report["changes"] == 0 and len(versions_of(hub, "x.txt")) == 2


def test_a_device_silent_for_longer_than_keep_does_not_hold_gc_back(make_device, hub):
    a, b = make_device("alpha"), make_device("beta")
    a.write("x.txt", "x1")
    sync_all([a, b])
    a.write("x.txt", "x2")
    a.sync()
    age_history(hub, "3 days")
    with hub.owner() as conn:  # beta's last pull: three days ago
        conn.execute("UPDATE shoal.device_folders SET last_pull_at = last_pull_at - interval '3 days'")
    assert gc(hub, "--keep", "1d", "--grace", "0s", "--dry-run")["changes"] == 1
    report = gc(hub, "--keep", "1d", "--grace", "0s")
    assert report["changes"] == 1
    assert len(versions_of(hub, "x.txt")) == 1
    assert folder_stats(hub)["gc_horizon"] > 0  # beta's cursor is before it: it resyncs from the heads
    b.sync()
    assert b.read("x.txt") == b"x2"
    assert_converged([a, b])


def test_dry_run_counts_what_a_run_removes_and_removes_nothing(make_device, hub):
    a = make_device("alpha")
    for v in range(3):
        a.write("doc.bin", os.urandom(200_000))
        a.write(f"tmp{v}.txt", f"temporary {v}")
        a.sync()
    for v in range(3):
        (a.root / f"tmp{v}.txt").unlink()
    a.sync()
    before = stats(hub)
    dry = gc(hub, "--keep", "0s", "--grace", "0s", "--dry-run")
    assert dry["dry_run"] is True
    assert stats(hub) == before
    real = gc(hub, "--keep", "0s", "--grace", "0s")
    for key in ("changes", "tombstones", "contents", "block_refs", "blocks", "bytes", "space_bytes"):
        assert dry[key] == real[key], key
    # the first two doc.bin (two blocks each) and tmp0-2 with their deletions
    assert real["changes"] == 2 + 3 + 3 and real["blocks"] == 2 * 2 + 3
    assert_consistent(hub)


def test_text_output_and_defaults(make_device, hub):
    a = make_device("alpha")
    a.write("a.txt", "1")
    a.sync()
    out = run_shoal("hub", "gc", "--url", hub.owner_url, check=True).stdout
    assert out.startswith("hub gc: freed 0 changes")
    out = run_shoal("hub", "stats", "--url", hub.owner_url, check=True).stdout
    assert "space default:" in out and "folder docs: 1 files, 1 versions" in out
    bad = run_shoal("hub", "gc", "--url", hub.owner_url, "--keep", "soon")
    assert bad.returncode == 2 and "duration" in bad.stderr


# -- who may run it ----------------------------------------------------------------------------


GC_FUNCTIONS = [f for f in INTERNAL_FUNCTIONS if f.startswith(("shoal.gc_", "shoal.stats_"))]


def _call(signature: str) -> str:
    """A call of `signature` with harmless arguments of its types."""
    values = {"text": "'default'", "timestamptz": "now()", "boolean": "false", "bigint": "0",
              "integer": "1", "text[]": "'{}'::text[]"}
    types = signature[signature.index("(") + 1:-1]
    args = [values[t.strip()] for t in types.split(",")] if types else []
    return f"SELECT {signature[:signature.index('(')]}({', '.join(args)})"


def test_a_device_login_cannot_run_gc_or_read_stats(make_device, hub):
    a = make_device("alpha")
    a.write("a.txt", "1")
    a.sync()
    assert len(GC_FUNCTIONS) >= 15
    with psycopg.connect(hub.login_dsn(a.login), autocommit=True) as conn:
        for signature in GC_FUNCTIONS:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(_call(signature))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM shoal.changes")
    # and through the CLI with the device's own URL and password
    proc = run_shoal("hub", "gc", "--url", hub.device_url(a.login), "--keep", "0s",
                     env={"PGPASSWORD": a.login.password})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    with hub.owner() as conn:
        assert conn.execute("SELECT count(*) FROM shoal.changes").fetchone()[0] == 1


# -- what a push in flight has uploaded stays -------------------------------------------------


def device_hub(hub, device) -> Hub:
    """A second session of `device`'s login through the hub API, as a new incarnation."""
    conn = connect(hub.device_url(device.login), device.login.password)
    api = Hub(conn, device.store.device_id, str(uuid.uuid4()), call_timeout=60)
    api.register(device.name)
    return api


def test_contents_uploaded_for_a_push_in_flight_survive_gc(make_device, hub):
    a = make_device("alpha")
    a.write("a.txt", "already here")
    a.sync()
    api = device_hub(hub, a)
    try:
        small, large = os.urandom(1000), os.urandom(MIN_BLOCK + 5)
        api.put_small_contents([(sha(small), small)], MIN_BLOCK)
        api.put_blocks([(sha(large[:MIN_BLOCK]), large[:MIN_BLOCK])])  # a large file half uploaded
        report = gc(hub, "--keep", "0s")  # the default grace: contents and blocks of the last hour stay
        assert (report["contents"], report["block_refs"], report["blocks"]) == (0, 0, 0)
        assert api.missing_contents([sha(small)]) == set()
        assert api.missing_blocks([sha(large[:MIN_BLOCK])]) == set()
        api.put_blocks([(sha(large[MIN_BLOCK:]), large[MIN_BLOCK:])])
        api.put_content(sha(large), len(large), MIN_BLOCK, [sha(large[:MIN_BLOCK]), sha(large[MIN_BLOCK:])])
        results = api.push("docs", [file_row(1, "small.bin", small), file_row(2, "large.bin", large)])
        assert [r.status.value for r in results] == ["accepted", "accepted"]
        assert_consistent(hub)
        # unreferenced and past the grace: gone (grace 0s is for a hub nobody pushes to)
        orphan = os.urandom(500)
        api.put_small_contents([(sha(orphan), orphan)], MIN_BLOCK)
        report = gc(hub, "--keep", "0s", "--grace", "0s")
        assert (report["contents"], report["blocks"]) == (1, 1)
        assert api.missing_contents([sha(orphan), sha(small), sha(large)]) == {sha(orphan)}
    finally:
        api.close()


def test_a_content_whose_block_left_its_space_gets_it_back(make_device, hub):
    """A content declared while GC takes its block out of the space (the device found the block
    on the hub just before), or a run killed before it mended that: the next run gives the
    block back to the space rather than deleting it."""
    a = make_device("alpha")
    data = os.urandom(3000)
    a.write("a.bin", data)
    a.sync()
    with hub.owner() as conn:
        conn.execute("DELETE FROM shoal.block_spaces WHERE sha256 = %s", (sha(data),))
        conn.execute("UPDATE shoal.space_usage SET bytes = bytes - %s", (len(data),))
    report = gc(hub, "--keep", "0s", "--grace", "0s")
    assert report["repaired"] == 1 and report["blocks"] == 0
    assert_consistent(hub)
    b = make_device("beta")
    b.sync()
    assert b.read("a.bin") == data


@pytest.mark.slow
def test_gc_next_to_a_device_that_keeps_pushing(make_device, hub):
    """GC runs again and again (keep 0s, the default grace) while alpha edits, adds, deletes and
    restores old versions of files (whose contents GC is collecting) and syncs in a loop: every
    push lands or, when GC took an old content between alpha's upload check and its push, is
    refused whole and goes through on the next sync; nothing a change references goes; the
    devices converge."""
    a, b = make_device("alpha"), make_device("beta")
    old = [os.urandom(rng_size) for rng_size in (40, 3000, MIN_BLOCK + 100) * 6]
    for i, data in enumerate(old):
        a.write(f"f{i % 20}.bin", data)
        if i % 20 == 19:
            a.sync()
    sync_all([a, b])
    age_history(hub, "2 hours")  # old versions: past the grace, so GC collects their contents
    errors: list[BaseException] = []
    refused = [0]
    stop = threading.Event()

    def edit_and_push():
        rng = random.Random(7)
        try:
            while not stop.is_set():
                for _ in range(10):
                    path = a.root / f"f{rng.randrange(24)}.bin"
                    if path.exists() and rng.random() < 0.15:
                        path.unlink()
                    elif rng.random() < 0.5:
                        a.write(path.name, rng.choice(old))  # an old version back
                    else:
                        a.write(path.name, os.urandom(rng.choice([50, 5000, MIN_BLOCK + 100])))
                try:
                    a.sync()
                except HubError as e:
                    if "not on the hub" not in str(e):
                        raise
                    refused[0] += 1
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    pusher = threading.Thread(target=edit_and_push)
    pusher.start()
    collected = {"changes": 0, "contents": 0, "blocks": 0}
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and pusher.is_alive():
            report = gc(hub, "--keep", "0s")
            assert not report["skipped"], report["skipped"]
            for key in collected:
                collected[key] += report[key]
    finally:
        stop.set()
        pusher.join(60)
    assert not errors, errors
    assert collected["changes"] > 0 and collected["contents"] > 0 and collected["blocks"] > 0, collected
    assert_consistent(hub)
    sync_all([a, b])
    assert_converged([a, b])
    gc(hub, "--keep", "0s", "--grace", "0s")
    assert_consistent(hub)
    sync_all([a, b])
    assert_converged([a, b])


# -- kill -9 -----------------------------------------------------------------------------------


def bulk_history(hub, device, folder: str, paths: int, versions: int) -> None:
    """Write `versions` versions of `paths` files (every seventh one deleted at the end) into
    `folder` as `device` would have pushed them, straight into the tables as the owner (pushing
    that many through a device would take minutes): one-block contents of a few bytes each."""
    with hub.owner() as conn, conn.transaction():
        conn.execute("SELECT set_config('shoal.space', 'default', true)")
        conn.execute("INSERT INTO shoal.folders(space, folder_id) VALUES ('default', %s) ON CONFLICT DO NOTHING",
                     (folder,))
        conn.execute("CREATE TEMP TABLE bulk ON COMMIT DROP AS"
                     " SELECT i, j, convert_to(format('%%s %%s %%s', %s::text, i, j), 'UTF8') AS data,"
                     "        format('d%%s/f%%s.txt', i %% 100, i) AS path"
                     " FROM generate_series(1, %s) i, generate_series(1, %s) j", (folder, paths, versions))
        conn.execute("INSERT INTO shoal.blocks(sha256, data) SELECT encode(sha256(data), 'hex'), data FROM bulk"
                     " ON CONFLICT DO NOTHING")
        conn.execute("INSERT INTO shoal.block_spaces(space, sha256) SELECT 'default', encode(sha256(data), 'hex')"
                     " FROM bulk ON CONFLICT DO NOTHING")
        conn.execute("INSERT INTO shoal.contents(space, sha256, size, block_size, blocks)"
                     " SELECT 'default', encode(sha256(data), 'hex'), octet_length(data), 131072,"
                     "        ARRAY[encode(sha256(data), 'hex')] FROM bulk ON CONFLICT DO NOTHING")
        incarnation = str(uuid.uuid4())
        conn.execute(
            "INSERT INTO shoal.changes(space, folder_id, path, path_hash, device_id, incarnation, seq, kind, size,"
            "                          mtime_ns, sha256, deleted, payload_md5)"
            " SELECT 'default', %s, path, sha256(convert_to(path, 'UTF8')), %s::uuid, %s::uuid, row_number() OVER (ORDER BY j, i),"
            "        'file', octet_length(data), 1700000000000000000 + j, encode(sha256(data), 'hex'), false, ''"
            " FROM bulk ORDER BY j, i", (folder, device.store.device_id, incarnation))
        conn.execute(
            "INSERT INTO shoal.changes(space, folder_id, path, path_hash, device_id, incarnation, seq, kind, size,"
            "                          mtime_ns, sha256, deleted, payload_md5)"
            " SELECT 'default', %s, path, sha256(convert_to(path, 'UTF8')), %s::uuid, %s::uuid, %s::bigint + i, 'file', 0,"
            "        1700000000000000000, encode(sha256(data), 'hex'), true, ''"
            " FROM bulk WHERE j = %s AND i %% 7 = 0 ORDER BY i",
            (folder, device.store.device_id, incarnation, paths * versions, versions))
        conn.execute(
            "INSERT INTO shoal.heads(space, folder_id, path, path_hash, version, device_id, incarnation, kind, size,"
            "                        mtime_ns, sha256, deleted)"
            " SELECT DISTINCT ON (path_hash) space, folder_id, path, path_hash, id, device_id, incarnation, kind,"
            "        size, mtime_ns, sha256, deleted"
            " FROM shoal.changes WHERE space = 'default' AND folder_id = %s ORDER BY path_hash, id DESC", (folder,))
        conn.execute(
            "UPDATE shoal.space_usage SET changes = (SELECT count(*) FROM shoal.changes WHERE space = 'default'),"
            " bytes = (SELECT coalesce(sum(octet_length(b.data)), 0) FROM shoal.block_spaces bs"
            "          JOIN shoal.blocks b USING (sha256) WHERE bs.space = 'default') WHERE space = 'default'")


def wait_until_no_gc_runs(hub, timeout: float = 30) -> None:
    """A killed `shoal hub gc`'s server session ends with its statement (then its lock is free)."""
    from shoal.hub.gc import GC_LOCK

    deadline = time.monotonic() + timeout
    with hub.owner() as conn:
        while not conn.execute("SELECT pg_try_advisory_lock(%s)", (GC_LOCK,)).fetchone()[0]:
            assert time.monotonic() < deadline, "a killed gc still holds the hub"
            time.sleep(0.1)
        conn.execute("SELECT pg_advisory_unlock(%s)", (GC_LOCK,))


@pytest.mark.slow
def test_kill_9_during_gc_leaves_a_consistent_hub(make_device, hub):
    a, b = make_device("alpha"), make_device("beta")
    for i in range(5):
        a.write(f"f{i}.txt", f"v1 {i}")
    sync_all([a, b])
    for i in range(5):
        a.write(f"f{i}.txt", f"v2 {i}")
    (a.root / "f4.txt").unlink()
    sync_all([a, b])
    bulk_history(hub, a, "bulk", paths=5_000, versions=5)
    with hub.owner() as conn:
        live = conn.execute("SELECT count(*) FROM shoal.heads WHERE folder_id = 'bulk' AND NOT deleted").fetchone()[0]
    assert_consistent(hub)
    rng = random.Random()
    kills = []
    # Each round kills it in another step: just after that step's first batch committed (seen
    # as its table shrinking), plus a random moment.
    for table in ("changes", "contents", "block_spaces", "blocks"):
        with hub.owner() as conn:
            count = f"SELECT count(*) FROM shoal.{table}"
            before = conn.execute(count).fetchone()[0]
            proc = subprocess.Popen([sys.executable, "-m", "shoal", "hub", "gc", "--url", hub.owner_url,
                                     "--keep", "0s", "--grace", "0s"], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 30
            while (proc.poll() is None and time.monotonic() < deadline
                   and conn.execute(count).fetchone()[0] >= before):
                time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.1))
        kills.append((table, proc.poll()))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        wait_until_no_gc_runs(hub)
        assert_consistent(hub)
        bulk_history(hub, a, f"bulk-{table}", paths=2_000, versions=3)  # more to collect next time
    assert sum(1 for _, exited in kills if exited is None) >= 3, kills  # killed mid-run
    report = gc(hub, "--keep", "0s", "--grace", "0s")
    assert not report["skipped"], kills
    assert_consistent(hub)
    with hub.owner() as conn:
        assert conn.execute("SELECT count(*) FROM shoal.heads WHERE folder_id = 'bulk' AND NOT deleted"
                            ).fetchone()[0] == live
        assert conn.execute("SELECT count(*) FROM shoal.heads WHERE deleted").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM shoal.changes").fetchone()[0] == \
            conn.execute("SELECT count(*) FROM shoal.heads").fetchone()[0]
    assert gc(hub, "--keep", "0s", "--grace", "0s")["blocks"] == 0
    b.write("f0.txt", "after the kills")
    sync_all([a, b])
    assert_converged([a, b])
    assert a.read("f0.txt") == b"after the kills"


# -- a hub owner that is not superuser (row level security applies to it) ----------------------


@pytest.fixture
def managed(tmp_path_factory):
    """A server of its own where the hub owner is a role with CREATEROLE and CREATEDB only (as on
    a managed PostgreSQL): forced row level security applies to it, one space at a time."""
    from tests.pgserver import TcpPostgres

    server = TcpPostgres(tmp_path_factory.mktemp("gc-managed"))
    try:
        with psycopg.connect(server.admin_dsn(), autocommit=True) as su:
            su.execute("CREATE ROLE gcowner LOGIN CREATEROLE CREATEDB PASSWORD 'owner-password-123'")
        with psycopg.connect(server.tcp_dsn("postgres", "gcowner", "owner-password-123"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE gchub")
        yield f"postgresql://gcowner:owner-password-123@127.0.0.1:{server.port}/gchub"
    finally:
        server.cleanup()


@pytest.mark.slow
def test_a_non_superuser_owner_collects_one_space_without_touching_another(managed):
    run_shoal("hub", "init", "--url", managed, check=True)
    apis = {}
    try:
        for name, space in (("alice", "alice"), ("bob", "bob")):
            login = json.loads(run_shoal("hub", "add-device", name, "--url", managed, "--space", space, "--json",
                                         check=True).stdout)
            apis[name] = Hub(connect(login["url"], login["password"]), str(uuid.uuid4()), str(uuid.uuid4()),
                             call_timeout=60)
            apis[name].register(name)
        alice, bob = apis["alice"], apis["bob"]
        shared, private = os.urandom(2000), os.urandom(3000)
        alice.put_small_contents([(sha(shared), shared), (sha(private), private)], MIN_BLOCK)
        bob.put_small_contents([(sha(shared), shared)], MIN_BLOCK)
        va, vp = (r.version for r in alice.push("docs", [file_row(1, "s.bin", shared), file_row(2, "p.bin", private)]))
        bob.push("docs", [file_row(1, "s.bin", shared)])
        alice.push("docs", [file_row(3, "s.bin", b"", deleted=True, base=va),
                            file_row(4, "p.bin", b"", deleted=True, base=vp)])
        with psycopg.connect(managed) as conn:
            assert conn.execute("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user"
                                ).fetchone() == (False,)
        report = gc_url(managed, "--keep", "0s", "--grace", "0s")
        assert (report["changes"], report["tombstones"], report["contents"]) == (4, 2, 2)
        assert (report["block_refs"], report["blocks"], report["bytes"]) == (2, 1, len(private))
        assert bob.get_blocks([sha(shared)]) == {sha(shared): shared}
        hub_stats = json.loads(run_shoal("hub", "stats", "--url", managed, "--json", check=True).stdout)
        spaces = {s["space"]: s for s in hub_stats["spaces"]}
        assert (spaces["alice"]["blocks"], spaces["alice"]["folders"][0]["files"]) == (0, 0)
        assert (spaces["bob"]["blocks"], spaces["bob"]["folders"][0]["files"]) == (1, 1)
        assert spaces["bob"]["bytes_stored"] == spaces["bob"]["usage_bytes"] == len(shared)
        assert hub_stats["hub"] == {"blocks": 1, "bytes": len(shared)}
        (vb,) = (h.version for h in bob.heads("docs"))
        bob.push("docs", [file_row(2, "s.bin", b"", deleted=True, base=vb)])
        report = gc_url(managed, "--keep", "0s", "--grace", "0s")
        assert (report["blocks"], report["bytes"]) == (1, len(shared))
        assert json.loads(run_shoal("hub", "stats", "--url", managed, "--json", check=True).stdout
                          )["hub"] == {"blocks": 0, "bytes": 0}
    finally:
        for api in apis.values():
            api.close()


# -- the daemon that owns an embedded hub -------------------------------------------------------


def test_the_daemon_that_owns_the_hub_collects_with_keep_versions(make_device, hub, monkeypatch, caplog):
    """Its GC thread (started only for hub.url: embedded), made to run at once: it collects with
    the config's hub.keep_versions and logs what it freed."""
    import logging
    from types import SimpleNamespace

    from shoal.daemon import loop

    a = make_device("alpha")
    for v in range(3):
        a.write("x.txt", f"v{v}")
        a.sync()
    monkeypatch.setattr(loop, "GC_FIRST", 0.0)
    daemon = SimpleNamespace(stopping=threading.Event(), _password=lambda: None,
                             device=SimpleNamespace(hub_url=lambda: hub.owner_url),
                             config=SimpleNamespace(hub=SimpleNamespace(keep_versions=0.0)))
    caplog.set_level(logging.INFO, logger="shoal.daemon")
    gc_thread = threading.Thread(target=loop.Daemon._collect_garbage, args=(daemon,))
    gc_thread.start()
    try:
        deadline = time.monotonic() + 30
        while not any("hub gc (keep 0s): freed 2 changes" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
            time.sleep(0.05)
    finally:
        daemon.stopping.set()
        gc_thread.join(30)
    assert len(versions_of(hub, "x.txt")) == 1


def test_keep_versions_in_the_config(tmp_path):
    from shoal.config import load_config
    from shoal.errors import ConfigError

    path = tmp_path / "config.yaml"
    path.write_text("hub:\n  keep_versions: 90d\n")
    assert load_config(path).hub.keep_versions == 90 * 86400
    path.write_text("hub:\n  url: embedded\n")
    assert load_config(path).hub.keep_versions == 30 * 86400
    for bad in ("0s", "forever", "-1d"):
        path.write_text(f"hub:\n  keep_versions: {bad}\n")
        with pytest.raises(ConfigError, match="keep_versions"):
            load_config(path)
