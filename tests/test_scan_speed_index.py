"""The scanner's writes and reads of the index as a first index and a rescan of many files use
them (issue 14 items 2 and 3): a batch of changed files is recorded with a statement prepared
once (Store.record_changes), not two statements per file, and a rescan reads the index as plain
key tuples, not a FileState per row. What must not change: the outbox rows, their order (seqs in
walk order), moves, metadata refreshes that are not changes, tombstones.

Real folders under tmp_path and a real store, as in tests/test_scanner.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shoal.localstore.store import Store
from shoal.scan.scanner import scan_folder

FID = "docs"




def write(root: Path, rel: str, data: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(data)
    return p


def outbox(store, after: int = 0) -> list[tuple]:
    return store.conn.execute(
        "SELECT path, kind, size, sha256, deleted, moved_from FROM outbox WHERE folder_id=? AND seq>?"
        " AND kind <> 'dir' ORDER BY seq", (FID, after)).fetchall()


def last_seq(store) -> int:
    return store.conn.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]


@pytest.fixture
def per_file_calls(monkeypatch):
    """Counts Store.record_change calls for files (not directories) and Store.record_changes calls."""
    calls = {"record_change": 0, "record_changes": 0}
    one, many = Store.record_change, Store.record_changes

    def record_change(self, fs, **kw):
        if fs.kind != "dir":
            calls["record_change"] += 1
        return one(self, fs, **kw)

    def record_changes(self, files, now):
        calls["record_changes"] += 1
        return many(self, files, now)

    monkeypatch.setattr(Store, "record_change", record_change)
    monkeypatch.setattr(Store, "record_changes", record_changes)
    return calls


def test_a_first_index_records_its_files_in_batches_not_one_call_per_file(store, root, per_file_calls):
    for i in range(60):
        write(root, f"d{i % 3}/f{i:02}.txt", f"content {i}")
    r = scan_folder(store, FID, root, now=1000)
    assert r.added == 60
    assert per_file_calls["record_change"] == 0
    assert per_file_calls["record_changes"] == 1
    rows = outbox(store)
    assert [p for p, *_ in rows] == sorted(f"d{i % 3}/f{i:02}.txt" for i in range(60))  # seqs in walk order
    assert store.conn.execute("SELECT DISTINCT created_at FROM outbox").fetchall() == [(1000,)]
    indexed = {f.path: f for f in store.iter_files(FID, dirs=False)}
    for path, kind, size, sha, deleted, moved_from in rows:
        f = indexed[path]
        assert (f.kind, f.size, f.sha256, f.deleted, f.version) == (kind, size, sha, 0, None)
        assert (f.mtime_ns, f.inode) == (os.lstat(root / path).st_mtime_ns, os.lstat(root / path).st_ino)
        assert moved_from is None and deleted == 0


def test_a_rescan_batch_keeps_changes_refreshes_moves_and_tombstones(store, root, per_file_calls):
    for name in ("a.txt", "b.txt", "c.txt", "d.txt"):
        write(root, name, f"was {name}")
    scan_folder(store, FID, root, now=1000)
    store.conn.execute("UPDATE files SET version=7 WHERE folder_id=?", (FID,))
    before = last_seq(store)
    write(root, "b.txt", "new b")  # modified
    os.utime(root / "c.txt", ns=(5, 5))  # touched: same content, a metadata refresh only
    os.rename(root / "d.txt", root / "e.txt")  # a move: tombstone of d, add of e moved from d
    write(root, "0.txt", "added")
    per_file_calls["record_changes"] = per_file_calls["record_change"] = 0
    r = scan_folder(store, FID, root, now=2000)
    assert (r.added, r.modified, r.deleted, r.moved, r.unchanged) == (2, 1, 1, 1, 2)
    assert per_file_calls["record_change"] == 1  # the tombstone, recorded after the walk
    rows = outbox(store, before)
    assert [(p, deleted, moved_from) for p, _, _, _, deleted, moved_from in rows] == [
        ("0.txt", 0, None), ("b.txt", 0, None), ("e.txt", 0, "d.txt"), ("d.txt", 1, None)]
    indexed = {f.path: f for f in store.iter_files(FID, dirs=False)}
    assert indexed["c.txt"].mtime_ns == 5 and indexed["c.txt"].version == 7
    assert indexed["b.txt"].version == 7  # a change is based on the version it replaces
    assert indexed["0.txt"].version is None and indexed["e.txt"].version is None
    assert indexed["d.txt"].deleted and indexed["d.txt"].version == 7


@pytest.fixture
def file_states_read(monkeypatch):
    """Index rows of files (not directories) the store turned into FileState objects."""
    from shoal.localstore import store as store_module
    made: list[str] = []
    real = store_module._file

    def counting(row):
        fs = real(row)
        if fs.kind != "dir":
            made.append(fs.path)
        return fs

    monkeypatch.setattr(store_module, "_file", counting)
    return made


def test_a_no_change_rescan_makes_no_file_state_per_indexed_file(store, root, file_states_read):
    for i in range(300):
        write(root, f"d{i % 4}/s{i % 2}/f{i:03}.txt", f"content {i}")
    scan_folder(store, FID, root)
    file_states_read.clear()
    r = scan_folder(store, FID, root)
    assert (r.files, r.unchanged, r.changes) == (300, 300, 0)
    assert file_states_read == []


def test_changes_in_the_middle_of_runs_and_at_the_end_of_the_index_are_found(store, root):
    for i in range(200):
        write(root, f"d{i % 2}/f{i:03}.txt", f"content {i}")
    write(root, "d0/sub/inner.txt", "inner")
    scan_folder(store, FID, root)
    before = last_seq(store)
    write(root, "d0/f100.txt", "changed")
    os.utime(root / "d0/f100.txt", ns=(7, 7))
    os.unlink(root / "d1/f101.txt")
    write(root, "d1/f101a.txt", "new")
    for i in range(150, 200):  # the index's last rows, gone from disk
        (root / f"d{i % 2}/f{i:03}.txt").unlink()
    r = scan_folder(store, FID, root, allow_mass_delete=True)
    assert (r.added, r.modified, r.deleted, r.unchanged) == (1, 1, 51, 149)
    rows = outbox(store, before)
    assert [(p, d) for p, _, _, _, d, _ in rows] == (
        [("d0/f100.txt", 0), ("d1/f101a.txt", 0)]
        + [(p, 1) for p in sorted(["d1/f101.txt"] + [f"d{i % 2}/f{i:03}.txt" for i in range(150, 200)])])
    # a part that is not recursive compares only that directory's files, not its subdirectory's
    (root / "d0/sub/inner.txt").write_text("inner changed")
    os.utime(root / "d0/sub/inner.txt", ns=(9, 9))
    write(root, "d0/f000.txt", "changed too")
    os.utime(root / "d0/f000.txt", ns=(8, 8))
    r = scan_folder(store, FID, root, only=[("d0", False)])
    assert (r.modified, r.deleted, r.unchanged) == (1, 0, 74)


def test_file_keys_read_one_snapshot_in_path_order_and_states_match_them(store):
    from shoal.model import FileState
    store.ensure_folder(FID, "/x")
    rows = [FileState(FID, p, kind, 3, 10 + i, 100 + i, "a" * 64, deleted, None, 5)
            for i, (p, kind, deleted) in enumerate([("a/x", "file", 0), ("a/sub/y", "file", 0), ("a", "dir", 0),
                                                    ("a/z", "symlink", 1), ("a.b", "exec", 0), ("b/q", "file", 0)])]
    store.put_files(rows)
    with store.file_keys(FID) as keys:
        first = next(keys.rows)
        store.put_files([rows[0]._replace(path="a/w")])  # written while reading: not in this snapshot
        got = [first, *keys.rows]
        assert got == [("a.b", "exec", 3, 14, 104, 0), ("a/sub/y", "file", 3, 11, 101, 0),
                       ("a/x", "file", 3, 10, 100, 0), ("a/z", "symlink", 3, 13, 103, 1), ("b/q", "file", 3, 15, 105, 0)]
        assert [(f.path, f.kind, f.size, f.mtime_ns, f.inode, f.deleted) for f in keys.states("a/sub/y", "a/z")] \
            == got[1:4]
    with store.file_keys(FID, under="a", recursive=False) as keys:
        assert [k[0] for k in keys.rows] == ["a/w", "a/x", "a/z"]
        assert [f.path for f in keys.states("a/w", "a/z")] == ["a/w", "a/x", "a/z"]
        assert keys.states("a/w", "a/z")[0].version == 5
    with store.file_keys(FID, under="a") as keys:
        assert [k[0] for k in keys.rows] == ["a/sub/y", "a/w", "a/x", "a/z"]
