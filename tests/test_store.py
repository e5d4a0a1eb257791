"""shoal.localstore: pragmas, identity, index + outbox, errors, conflicts, runs, migrations, corruption.

Every test opens a real store (APSW on a tmp dir); nothing is mocked.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import apsw
import pytest

from shoal.errors import StoreCorrupt, StoreError
from shoal.localstore import STORE_FILENAME, open_store
from shoal.localstore import migrate as migrate_mod
from shoal.localstore import store as store_mod
from shoal.localstore.migrate import apply_migrations, available_migrations, current_version
from shoal.localstore.store import APPLICATION_ID
from shoal.model import FileState

NOW = 1_700_000_000
MTIME = NOW * 1_000_000_000


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def fs(path: str, content: str = "x", *, folder: str = "f", deleted: bool = False,
       version: int | None = None) -> FileState:
    return FileState(folder, path, "file", len(content), MTIME, 7, sha(content), deleted, None, version)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def store(state_dir):
    s = open_store(state_dir)
    s.ensure_folder("f", "/folders/f")
    yield s
    s.close()


def outbox_rows(store, folder: str = "f") -> list[tuple]:
    return store.conn.execute(
        "SELECT seq, path, deleted, state, version, moved_from FROM outbox WHERE folder_id=? ORDER BY seq",
        (folder,),
    ).fetchall()


# -- opening --------------------------------------------------------------------------


def test_pragmas_in_effect(store):
    one = lambda sql: store.conn.execute(sql).fetchone()[0]  # noqa: E731
    assert one("PRAGMA journal_mode") == "wal"
    assert one("PRAGMA synchronous") == 2  # FULL
    assert one("PRAGMA foreign_keys") == 1
    assert one("PRAGMA busy_timeout") > 0
    assert one("PRAGMA application_id") == APPLICATION_ID


def test_foreign_keys_are_enforced(store):
    with pytest.raises(apsw.ConstraintError):
        store.put_file(fs("a.txt", folder="no-such-folder"))
    assert store.get_file("no-such-folder", "a.txt") is None


def test_identity_is_stable_across_reopen(state_dir):
    s = open_store(state_dir)
    device, incarnation = s.device_id, s.incarnation_id
    s.close()
    assert device and incarnation and device != incarnation
    s = open_store(state_dir)
    assert (s.device_id, s.incarnation_id) == (device, incarnation)
    s.close()
    other = open_store(state_dir.parent / "other-state")
    assert other.device_id != device
    other.close()


def test_open_without_create_refuses_missing_store(tmp_path):
    with pytest.raises(StoreError):
        open_store(tmp_path / "nothing", create=False)
    assert not (tmp_path / "nothing" / STORE_FILENAME).exists()


def test_data_survives_reopen(state_dir):
    s = open_store(state_dir)
    s.ensure_folder("f", "/x")
    seq = s.record_change(fs("a.txt", "hello"), now=NOW)
    s.close()
    s = open_store(state_dir)
    assert s.get_file("f", "a.txt") == fs("a.txt", "hello")
    assert [c.seq for c in s.pending_changes("f")] == [seq]
    s.close()


# -- index + outbox -------------------------------------------------------------------


def test_record_change_writes_index_and_outbox_with_increasing_seq(store):
    seqs = [
        store.record_change(fs("b.txt", "1"), now=NOW),
        store.record_change(fs("a.txt", "2"), now=NOW),
        store.record_change(fs("b.txt", "3"), now=NOW),
    ]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert store.get_file("f", "b.txt").sha256 == sha("3")
    assert store.get_file("f", "a.txt").sha256 == sha("2")
    pending = store.pending_changes("f")
    assert [(c.seq, c.path, c.sha256) for c in pending] == [
        (seqs[0], "b.txt", sha("1")), (seqs[1], "a.txt", sha("2")), (seqs[2], "b.txt", sha("3"))]
    created = store.conn.execute("SELECT DISTINCT created_at FROM outbox").fetchall()
    assert created == [(NOW,)]


def test_seq_is_never_reused_after_rows_are_pruned(store):
    first = store.record_change(fs("a.txt", "1"), now=NOW)
    store.mark_outbox([first], "pushed", version=1)
    store.prune_outbox(keep_after=NOW + 1)
    assert outbox_rows(store) == []
    # A seq the hub has seen must never name other content: AUTOINCREMENT keeps going up.
    assert store.record_change(fs("a.txt", "2"), now=NOW) > first


def test_record_change_is_atomic(store):
    store.record_change(fs("a.txt", "old", version=3), now=NOW)
    store.conn.execute(
        "CREATE TEMP TRIGGER refuse_outbox BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'boom'); END")
    with pytest.raises(apsw.ConstraintError):
        store.record_change(fs("a.txt", "new"), now=NOW)
    with pytest.raises(apsw.ConstraintError):
        store.record_change(fs("b.txt", "new"), now=NOW)
    store.conn.execute("DROP TRIGGER refuse_outbox")
    # The index write of the failed calls was rolled back with the outbox insert.
    assert store.get_file("f", "a.txt") == fs("a.txt", "old", version=3)
    assert store.get_file("f", "b.txt") is None
    assert [c.path for c in store.pending_changes("f")] == ["a.txt"]


def test_record_change_keeps_tombstones_and_moves(store):
    store.record_change(fs("new.txt", "c"), now=NOW)
    seq = store.record_change(fs("old.txt", "c", deleted=True, version=4), now=NOW)
    store.set_moved_from("f", "new.txt", "old.txt")
    tomb = store.get_file("f", "old.txt")
    assert tomb.deleted and tomb.version == 4
    changes = {c.path: c for c in store.pending_changes("f")}
    assert changes["new.txt"].moved_from == "old.txt"
    assert changes["old.txt"].deleted and changes["old.txt"].seq == seq
    assert [f.path for f in store.iter_files("f", include_deleted=False)] == ["new.txt"]
    assert [f.path for f in store.iter_files("f")] == ["new.txt", "old.txt"]
    assert store.folder_totals("f") == (1, 1)


def test_pending_changes_mark_outbox_and_supersede(store):
    s1 = store.record_change(fs("a.txt", "1"), now=NOW)
    s2 = store.record_change(fs("b.txt", "1"), now=NOW)
    s3 = store.record_change(fs("a.txt", "2"), now=NOW)
    s4 = store.record_change(fs("c.txt", "1"), now=NOW)
    assert [c.seq for c in store.pending_changes("f", limit=2)] == [s1, s2]
    assert [c.seq for c in store.pending_changes("f", after_seq=s2)] == [s3, s4]
    assert store.pending_count("f") == 4

    store.mark_outbox([s1], "superseded")
    assert [c.seq for c in store.pending_changes("f")] == [s2, s3, s4]
    store.mark_outbox([s2, s4], "pushed", version=17)
    assert [c.seq for c in store.pending_changes("f")] == [s3]
    assert store.pending_count("f") == 1
    assert store.pending_paths("f") == {"a.txt"}
    states = {seq: (state, version) for seq, _, _, state, version, _ in outbox_rows(store)}
    assert states == {s1: ("superseded", None), s2: ("pushed", 17), s3: ("pending", None),
                      s4: ("pushed", 17)}

    # Pruning forgets old non-pending rows only.
    store.prune_outbox(keep_after=NOW + 1)
    assert [r[0] for r in outbox_rows(store)] == [s3]


def test_outbox_is_per_folder(store):
    store.ensure_folder("g", "/folders/g")
    store.record_change(fs("a.txt", folder="g"), now=NOW)
    assert store.pending_changes("f") == []
    assert [c.folder_id for c in store.pending_changes("g")] == ["g"]


def test_deleting_a_folder_cascades(store):
    store.record_change(fs("a.txt"), now=NOW)
    store.conn.execute("DELETE FROM folders WHERE id='f'")
    assert store.get_file("f", "a.txt") is None
    assert outbox_rows(store) == []


def test_find_by_sha_returns_live_files_only(store):
    store.put_file(fs("a.txt", "same"))
    store.put_file(fs("b.txt", "same"))
    store.put_file(fs("gone.txt", "same", deleted=True))
    store.put_file(fs("other.txt", "different"))
    assert sorted(f.path for f in store.find_by_sha(sha("same"))) == ["a.txt", "b.txt"]


def test_reset_for_new_hub_requeues_live_files_and_drops_tombstones(store):
    store.update_folder("f", pull_cursor=99)
    live_synced = fs("synced.txt", "s", version=5)
    store.put_file(live_synced)
    store.put_file(fs("tomb.txt", "t", deleted=True, version=6))
    pending_seq = store.record_change(fs("pending.txt", "p"), now=NOW)
    pushed_seq = store.record_change(fs("pushed.txt", "q"), now=NOW)
    store.mark_outbox([pushed_seq], "pushed", version=8)
    store.set_version("f", "pushed.txt", 8)
    store.record_change(fs("deleted-locally.txt", "d", deleted=True, version=2), now=NOW)

    queued = store.reset_for_new_hub("f", NOW + 10)

    assert queued == 2  # synced.txt and pushed.txt; pending.txt already has its row
    assert store.get_file("f", "tomb.txt") is None
    assert store.get_file("f", "deleted-locally.txt") is None
    assert all(f.version is None for f in store.iter_files("f"))
    assert sorted(f.path for f in store.iter_files("f")) == ["pending.txt", "pushed.txt", "synced.txt"]
    assert store.folder("f").pull_cursor == 0
    pending = store.pending_changes("f")
    assert sorted(c.path for c in pending) == ["pending.txt", "pushed.txt", "synced.txt"]
    assert not any(c.deleted for c in pending)
    assert [c.seq for c in pending if c.path == "pending.txt"] == [pending_seq]
    requeued = {c.path: c for c in pending}["synced.txt"]
    assert (requeued.sha256, requeued.size) == (live_synced.sha256, live_synced.size)
    # Nothing local was deleted: every live file is still live.
    assert store.folder_totals("f")[0] == 3


def test_iter_files_streams_in_path_order_while_writes_happen(store):
    # Binary (code point) order: '-' < '.' < '/' < 'A' < '_' < 'a' < 'é' < '日'.
    names = ["b.txt", "a/b.txt", "a.b", "a-b", "A.txt", "_x", "é.txt", "日本.txt", "a/a/z", "zz"]
    for n in reversed(names):
        store.put_file(fs(n))
    store.put_file(fs("dead", deleted=True))
    expected = sorted(names + ["dead"])

    seen = []
    it = store.iter_files("f")
    seen.append(next(it).path)
    # Writes while the iterator is open: they must neither block nor change what it yields.
    store.record_change(fs("0-new-first"), now=NOW)
    store.record_change(fs("zzz-new-last"), now=NOW)
    store.conn.execute("DELETE FROM files WHERE folder_id='f' AND path='zz'")
    store.put_file(fs("b.txt", "changed"))
    for f in it:
        seen.append(f.path)
        store.set_version("f", f.path, 1)  # write on every row, as a scan does
    assert seen == expected
    # The writes are durable and visible to the next iteration.
    after = [f.path for f in store.iter_files("f")]
    assert after == sorted([n for n in expected if n != "zz"] + ["0-new-first", "zzz-new-last"])
    assert store.get_file("f", "b.txt").sha256 == sha("changed")
    assert [f.path for f in store.iter_files("f", include_deleted=False)] == [n for n in after if n != "dead"]


def test_folders(store):
    assert store.folder("nope") is None
    row = store.ensure_folder("f", "/moved/f")
    assert row.path == "/moved/f" and row.first_scan_at is None and not row.marker_seen
    store.update_folder("f", paused="why", first_scan_at=NOW, marker_seen=1, last_sync_at=NOW + 1)
    row = store.folder("f")
    assert (row.paused, row.first_scan_at, row.marker_seen, row.last_sync_at) == ("why", NOW, True, NOW + 1)
    with pytest.raises(ValueError):
        store.update_folder("f", id="evil")
    store.ensure_folder("a", "/a")
    assert [r.id for r in store.folders()] == ["a", "f"]


def test_meta_set_get_delete(store):
    store.set_meta("hub_id", "h1")
    store.set_meta("hub_id", "h2")
    assert store.get_meta("hub_id") == "h2"
    store.set_meta("hub_id", None)
    assert store.get_meta("hub_id") is None


# -- errors, conflicts, runs ----------------------------------------------------------


def test_errors_upsert_increments_retries(store):
    assert store.error_retries("f", "a.txt", "read") == 0
    store.record_error("f", "a.txt", "read", "cannot read: denied", NOW, NOW + 60)
    store.record_error("f", "a.txt", "read", "cannot read: gone", NOW + 60, NOW + 180)
    store.record_error("f", "a.txt", "write", "disk full", NOW, NOW + 60)
    store.record_error("f", "b.txt", "read", "x", NOW, NOW + 60)
    errs = {(e.path, e.kind): e for e in store.errors("f")}
    e = errs[("a.txt", "read")]
    assert (e.retries, e.message, e.next_retry) == (1, "cannot read: gone", NOW + 180)
    assert errs[("a.txt", "write")].retries == 0
    first_at = store.conn.execute(
        "SELECT first_at FROM errors WHERE path='a.txt' AND kind='read'").fetchone()[0]
    assert first_at == NOW  # when the problem started, not when it was last seen
    assert store.error_retries("f", "a.txt", "read") == 2

    store.clear_error("f", "a.txt", "read")
    assert sorted((e.path, e.kind) for e in store.errors("f")) == [("a.txt", "write"), ("b.txt", "read")]
    store.clear_error("f", "a.txt")
    assert [(e.path, e.kind) for e in store.errors()] == [("b.txt", "read")]
    assert store.errors("other") == []


def test_conflicts_are_recorded_once_and_listed(store):
    store.record_conflict("f", "a.txt", "a.sync-conflict-x.txt", "dev1", "dev2", NOW, hub_version=3)
    store.record_conflict("f", "a.txt", "a.sync-conflict-x.txt", "dev1", "dev2", NOW, hub_version=3)
    store.record_conflict("f", "b.txt", None, "dev2", "dev1", NOW + 1, hub_version=4)
    store.record_conflict("f", "b.txt", None, "dev2", "dev1", NOW + 1, hub_version=4)  # newest-wins
    store.record_conflict("g", "c.txt", "c.conflict", "d", "e", NOW + 2)
    listed = store.conflicts("f")
    assert listed == [
        {"folder": "f", "path": "a.txt", "conflict_path": "a.sync-conflict-x.txt",
         "winner_device": "dev1", "loser_device": "dev2", "detected_at": NOW},
        {"folder": "f", "path": "b.txt", "conflict_path": None,
         "winner_device": "dev2", "loser_device": "dev1", "detected_at": NOW + 1},
    ]
    assert len(store.conflicts()) == 3


def test_start_run_marks_a_previous_running_run_interrupted(store):
    first = store.start_run("f", NOW)
    done = store.start_run(None, NOW + 1)  # interrupts `first`
    store.update_run(done, status="ok", finished_at=NOW + 2, pushed=3, pulled=4, files_done=5)
    third = store.start_run("f", NOW + 3)
    status = dict(store.conn.execute("SELECT id, status FROM sync_runs").fetchall())
    assert status == {first: "interrupted", done: "ok", third: "running"}
    last = store.last_run()
    assert last["id"] == third and last["status"] == "running" and last["folder"] == "f"
    with pytest.raises(ValueError):
        store.update_run(third, folder_id="x")


def test_start_run_after_a_crash(state_dir):
    s = open_store(state_dir)
    run = s.start_run("f", NOW)
    s.close()  # the process died mid-run
    s = open_store(state_dir)
    s.start_run("f", NOW + 5)
    assert s.conn.execute("SELECT status FROM sync_runs WHERE id=?", (run,)).fetchone()[0] == "interrupted"
    s.close()


def test_integrity_problems_empty_when_healthy(store):
    assert store.integrity_problems() == []


# -- migrations -----------------------------------------------------------------------


def make_store_at_version(state_dir: Path, version: int) -> None:
    """A store as the shoal release whose newest migration was `version` left it, with data."""
    state_dir.mkdir(parents=True, exist_ok=True)
    conn = apsw.Connection(str(state_dir / STORE_FILENAME))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
    assert apply_migrations(conn, NOW, upto=version) == list(range(1, version + 1))
    assert current_version(conn) == version
    # Data in the tables every version has had since migration 1.
    conn.execute("INSERT INTO meta(key, value) VALUES ('device_id', 'dev-old'), ('incarnation_id', 'inc-old')")
    conn.execute("INSERT INTO folders(id, path, first_scan_at, marker_seen) VALUES ('f', '/f', ?, 1)", (NOW,))
    conn.execute(
        "INSERT INTO files(folder_id, path, kind, size, mtime_ns, inode, sha256, version)"
        " VALUES ('f', 'kept.txt', 'file', 5, ?, 9, ?, 12)", (MTIME, sha("kept")))
    conn.execute(
        "INSERT INTO outbox(folder_id, path, kind, size, mtime_ns, sha256, created_at)"
        " VALUES ('f', 'kept.txt', 'file', 5, ?, ?, ?)", (MTIME, sha("kept"), NOW))
    conn.close()


def check_upgrade_from(tmp_path: Path, version: int) -> None:
    latest = migrate_mod.available_migrations()[-1][0]  # the module attribute: tests may patch it
    state_dir = tmp_path / f"from-v{version}"
    make_store_at_version(state_dir, version)

    s = open_store(state_dir)
    try:
        assert current_version(s.conn) == latest
        applied = [r[0] for r in s.conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        assert applied == list(range(1, latest + 1))
        assert (s.device_id, s.incarnation_id) == ("dev-old", "inc-old")
        kept = s.get_file("f", "kept.txt")
        assert (kept.sha256, kept.version) == (sha("kept"), 12)
        assert [c.path for c in s.pending_changes("f")] == ["kept.txt"]
        assert s.folder("f").first_scan_at == NOW
    finally:
        s.close()

    backup = state_dir / f"{STORE_FILENAME}.bak-v{version}"
    assert backup.exists(), "an existing store is backed up before it is migrated"
    bak = apsw.Connection(str(backup), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        assert current_version(bak) == version
        assert bak.execute("SELECT path FROM files").fetchall() == [("kept.txt",)]
    finally:
        bak.close()


def test_upgrade_from_every_earlier_version(tmp_path):
    latest = available_migrations()[-1][0]
    for version in range(1, latest):  # empty while migration 1 is the only one
        check_upgrade_from(tmp_path, version)


REAL_LATEST = available_migrations()[-1][0]
NOTES = REAL_LATEST + 1  # the number of the first test migration (after every real one)
TEST_MIGRATIONS = [
    (NOTES, f"{NOTES:04d}_test_notes.sql",
     "ALTER TABLE files ADD COLUMN note TEXT NOT NULL DEFAULT 'v2';\n"
     "CREATE TABLE test_notes (path TEXT PRIMARY KEY);\n"
     "INSERT INTO test_notes(path) SELECT path FROM files;"),
    (NOTES + 1, f"{NOTES + 1:04d}_test_more.sql",
     "CREATE TABLE test_more (n INTEGER);\nINSERT INTO test_more VALUES (3);"),
]


@pytest.fixture
def extra_migrations(monkeypatch):
    """Pretend the package ships two more migrations after its own (test-only, harmless)."""
    real = available_migrations()
    assert [n for n, _, _ in real] == list(range(1, REAL_LATEST + 1))
    fake = lambda: real + TEST_MIGRATIONS  # noqa: E731
    monkeypatch.setattr(migrate_mod, "available_migrations", fake)
    monkeypatch.setattr(store_mod, "available_migrations", fake)
    return fake


def test_upgrade_from_every_earlier_version_with_test_migrations(tmp_path, extra_migrations):
    latest = migrate_mod.available_migrations()[-1][0]
    assert latest == NOTES + 1
    for version in range(1, latest):
        check_upgrade_from(tmp_path, version)
        s = open_store(tmp_path / f"from-v{version}")
        # The test migrations really ran, data migration included (from NOTES on it ran on an empty table).
        expected_notes = [("kept.txt",)] if version < NOTES else []
        assert s.conn.execute("SELECT path FROM test_notes").fetchall() == expected_notes
        assert s.conn.execute("SELECT note FROM files").fetchall() == [("v2",)]
        assert s.conn.execute("SELECT n FROM test_more").fetchall() == [(3,)]
        s.close()


def test_a_failing_migration_leaves_no_trace(tmp_path, monkeypatch):
    state_dir = tmp_path / "s"
    make_store_at_version(state_dir, 1)
    broken = available_migrations() + [
        (NOTES, f"{NOTES:04d}_broken.sql", "CREATE TABLE half_done (x);\nINSERT INTO no_such_table VALUES (1);")]
    monkeypatch.setattr(migrate_mod, "available_migrations", lambda: broken)
    monkeypatch.setattr(store_mod, "available_migrations", lambda: broken)
    with pytest.raises(StoreError):
        open_store(state_dir)
    conn = apsw.Connection(str(state_dir / STORE_FILENAME))
    try:
        # One transaction per migration: the real ones stay, neither the broken one's schema
        # change nor its row was kept.
        assert current_version(conn) == REAL_LATEST
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type='table'")}
        assert "half_done" not in tables
        assert conn.execute("SELECT path FROM files").fetchall() == [("kept.txt",)]
    finally:
        conn.close()
    assert (state_dir / f"{STORE_FILENAME}.bak-v1").exists()


def test_an_existing_backup_is_never_overwritten(tmp_path, extra_migrations):
    # E.g. the user restored shoal.db from its .bak-v1 and opens it again with this release.
    state_dir = tmp_path / "s"
    make_store_at_version(state_dir, 1)
    old_backup = state_dir / f"{STORE_FILENAME}.bak-v1"
    old_backup.write_bytes(b"an older backup the user may still need")
    s = open_store(state_dir)
    assert current_version(s.conn) == NOTES + 1
    s.close()
    assert old_backup.read_bytes() == b"an older backup the user may still need"
    backups = sorted(p.name for p in state_dir.iterdir() if p.name.startswith(f"{STORE_FILENAME}.bak-v1"))
    assert len(backups) == 2


def test_a_store_at_the_latest_version_reopens_without_backup(state_dir):
    s = open_store(state_dir)
    s.ensure_folder("f", "/f")
    s.close()
    assert not list(state_dir.glob("*.bak-*")), "a new store needs no backup"
    s = open_store(state_dir)
    assert current_version(s.conn) == available_migrations()[-1][0]
    assert s.folder("f") is not None
    s.close()
    assert not list(state_dir.glob("*.bak-*"))


def test_a_store_from_a_newer_shoal_is_refused(state_dir):
    s = open_store(state_dir)
    s.conn.execute("INSERT INTO schema_migrations(version, name, applied_at) VALUES (999, '0999_future.sql', 0)")
    s.close()
    with pytest.raises(StoreError) as info:
        open_store(state_dir)
    assert not isinstance(info.value, StoreCorrupt)
    assert "newer" in str(info.value)
    assert not list(state_dir.glob("*.bak-*"))


def test_an_empty_file_is_initialised(state_dir):
    (state_dir / STORE_FILENAME).write_bytes(b"")
    s = open_store(state_dir)
    assert current_version(s.conn) == available_migrations()[-1][0]
    s.close()


# -- corruption -----------------------------------------------------------------------


def assert_refused_untouched(state_dir: Path) -> StoreCorrupt:
    path = state_dir / STORE_FILENAME
    before = file_digest(path)
    with pytest.raises(StoreCorrupt) as info:
        open_store(state_dir)
    assert file_digest(path) == before, "a corrupt or foreign store is never replaced or modified"
    assert not list(state_dir.glob("*.bak-*"))
    # Still refused the second time: nothing was "repaired" in place.
    with pytest.raises(StoreCorrupt):
        open_store(state_dir)
    assert file_digest(path) == before
    return info.value


@pytest.mark.parametrize("content", [b"hello\n", b"not a database\n" * 2000])
def test_a_text_file_at_the_store_path_is_refused(state_dir, content):
    (state_dir / STORE_FILENAME).write_bytes(content)
    err = assert_refused_untouched(state_dir)
    assert err.exit_code == 1


def test_a_foreign_sqlite_database_is_refused(state_dir):
    conn = apsw.Connection(str(state_dir / STORE_FILENAME))
    conn.execute("CREATE TABLE recipes (name TEXT, steps TEXT)")
    conn.execute("INSERT INTO recipes VALUES ('bread', 'knead')")
    conn.close()
    err = assert_refused_untouched(state_dir)
    assert "foreign" in str(err)
    conn = apsw.Connection(str(state_dir / STORE_FILENAME))
    assert conn.execute("SELECT name FROM recipes").fetchall() == [("bread",)]
    conn.close()


def test_a_foreign_database_with_a_migrations_table_is_refused(state_dir):
    # Another tool's `schema_migrations` table does not make the file ours: the application id does.
    conn = apsw.Connection(str(state_dir / STORE_FILENAME))
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at INTEGER)")
    conn.execute("INSERT INTO schema_migrations VALUES (1, 'x', 0)")
    conn.close()
    assert_refused_untouched(state_dir)


def make_big_store(state_dir: Path) -> dict[str, int]:
    """A store spanning many pages; returns the root page of each table and index."""
    s = open_store(state_dir)
    s.ensure_folder("f", "/f")
    with s.transaction():
        for i in range(3000):
            s.put_file(fs(f"dir/file-{i:05d}.txt", str(i)))
    roots = dict(s.conn.execute("SELECT name, rootpage FROM sqlite_schema WHERE rootpage > 0").fetchall())
    s.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    s.close()
    assert not (state_dir / f"{STORE_FILENAME}-wal").exists() or \
        (state_dir / f"{STORE_FILENAME}-wal").stat().st_size == 0
    return roots


@pytest.mark.parametrize("victim", ["files", "files_sha256", "outbox_pending"])
def test_a_store_with_a_garbage_page_is_refused(state_dir, victim):
    roots = make_big_store(state_dir)
    path = state_dir / STORE_FILENAME
    page_size = int.from_bytes(path.read_bytes()[16:18], "big")
    with open(path, "r+b") as f:
        f.seek((roots[victim] - 1) * page_size)  # a page boundary: that b-tree's root page
        f.write(random.Random(victim).randbytes(page_size))
    err = assert_refused_untouched(state_dir)
    assert err.exit_code == 1


def test_a_garbage_page_in_the_middle_of_the_file_is_refused(state_dir):
    make_big_store(state_dir)
    path = state_dir / STORE_FILENAME
    size = path.stat().st_size
    page_size = int.from_bytes(path.read_bytes()[16:18], "big")
    middle = (size // page_size // 2) * page_size
    with open(path, "r+b") as f:
        f.seek(middle)
        f.write(random.Random(1).randbytes(page_size))
    assert_refused_untouched(state_dir)


def test_store_corrupt_is_a_store_error_with_exit_code_1():
    assert issubclass(StoreCorrupt, StoreError)
    assert StoreCorrupt("x").exit_code == 1


def test_opening_a_healthy_store_does_not_leave_extra_files(state_dir):
    s = open_store(state_dir)
    s.close()
    names = set(os.listdir(state_dir))
    assert STORE_FILENAME in names
    # the database, its WAL files, and the stamp a clean close leaves (see _check_existing)
    assert names <= {STORE_FILENAME, f"{STORE_FILENAME}-wal", f"{STORE_FILENAME}-shm", f"{STORE_FILENAME}.closed"}


# -- when the integrity check runs ----------------------------------------------------------------


def test_a_store_as_shoal_closed_it_is_not_checked_again_at_open(state_dir):
    """The check reads the whole store (as long as a `find` of the folder): it runs when the
    store may have changed outside shoal, not at every `shoal status`."""
    make_big_store(state_dir)
    s = open_store(state_dir)
    assert not s.checked_at_open
    s.close()


def test_a_store_written_by_a_process_that_did_not_close_it_is_checked(state_dir):
    make_big_store(state_dir)
    crashed = open_store(state_dir)  # writes, then "dies": never closed
    crashed.ensure_folder("g", "/g")
    s = open_store(state_dir)
    assert s.checked_at_open
    s.close()
    crashed.conn.close()


def test_a_store_changed_by_another_program_is_checked_and_refused(state_dir):
    make_big_store(state_dir)
    path = state_dir / STORE_FILENAME
    page_size = int.from_bytes(path.read_bytes()[16:18], "big")
    with open(path, "r+b") as f:  # same size, another mtime
        f.seek(3 * page_size)
        f.write(random.Random(3).randbytes(page_size))
    assert_refused_untouched(state_dir)
