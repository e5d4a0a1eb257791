"""Three devices, one real PostgreSQL hub: the sync semantics of SPEC.md end to end."""

from __future__ import annotations

import os

import pytest

from tests.devices import Device, assert_converged, sync_all
from tests.fixtures.devices import TEST_PASSPHRASE


@pytest.fixture(params=["plain", "sealed"])
def encryption(request):
    """Every test here runs with plain and with end-to-end encrypted folders."""
    return request.param


@pytest.fixture
def trio(tmp_path, hub, encryption):
    passphrase = TEST_PASSPHRASE if encryption == "sealed" else None
    ds = [Device(tmp_path, n, hub, passphrase=passphrase) for n in ("alpha", "beta", "gamma")]
    yield ds
    for d in ds:
        d.close()


def test_adds_edits_deletes_renames_converge(trio):
    a, b, c = trio
    a.write("notes/deep/nested/todo.txt", "buy milk")
    a.write("Ünïcødé ñame/日本語.md", "こんにちは")
    a.write("empty.bin", b"")
    big = os.urandom(3 * 1024 * 1024 + 17)
    b.write("media/big.bin", big)
    c.write("c.txt", "from c")
    sync_all(trio)
    heads = assert_converged(trio)
    assert len(heads) == 5
    assert c.read("media/big.bin") == big

    a.write("notes/deep/nested/todo.txt", "buy oat milk")
    (b.root / "c.txt").unlink()
    os.rename(c.root / "media/big.bin", c.root / "media/renamed.bin")
    sync_all(trio)
    heads = assert_converged(trio)
    assert "c.txt" not in heads and "media/renamed.bin" in heads
    assert b.read("notes/deep/nested/todo.txt") == b"buy oat milk"
    assert a.read("media/renamed.bin") == big
    # the deleted file was kept in the trash on the devices it was removed from
    assert any(t.startswith("c.txt~") for t in a.trash())


def test_concurrent_edits_keep_both(trio):
    a, b, c = trio
    a.write("doc.txt", "base")
    sync_all(trio)
    a.write("doc.txt", "alpha edit", mtime=2_000_000_000)
    b.write("doc.txt", "beta edit", mtime=2_000_000_100)
    a.sync()
    b.sync()
    sync_all(trio)
    heads = assert_converged(trio)
    contents = {a.read(p) for p in heads}
    assert b"alpha edit" in contents and b"beta edit" in contents
    assert a.read("doc.txt") == b"beta edit"  # the newer mtime keeps the path
    copies = [p for p in heads if ".sync-conflict-" in p]
    assert len(copies) == 1 and copies[0].endswith("-alpha.txt")
    assert all(d.store.conflicts() for d in trio)


def test_edit_beats_delete(trio):
    a, b, c = trio
    a.write("keep.txt", "v1")
    sync_all(trio)
    a.write("keep.txt", "v2 edited")
    (b.root / "keep.txt").unlink()
    b.sync()
    a.sync()
    sync_all(trio)
    assert_converged(trio)
    assert b.read("keep.txt") == b"v2 edited"


def test_identical_edits_are_no_conflict(trio):
    a, b, c = trio
    a.write("same.txt", "v1")
    sync_all(trio)
    a.write("same.txt", "same new content")
    b.write("same.txt", "same new content")
    a.sync()
    b.sync()
    sync_all(trio)
    heads = assert_converged(trio)
    assert not [p for p in heads if "sync-conflict" in p]
    assert not any(d.store.conflicts() for d in trio)


@pytest.mark.parametrize("push_batch", [None, 2])
def test_store_restored_from_backup_keeps_syncing(trio, tmp_path, monkeypatch, push_batch):
    """A store restored from a backup reuses seqs the hub already holds with other content:
    the device continues as a new incarnation instead of being refused forever. With batches
    of 2, the refusal comes for the first of several batches pushed one after the other."""
    import shutil

    import shoal.sync.engine as engine_mod

    if push_batch:
        monkeypatch.setattr(engine_mod, "PUSH_BATCH", push_batch)
    a, b, _ = trio
    a.write("one.txt", "1")
    a.sync()
    a.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copy(a.state / "shoal.db", tmp_path / "backup.db")
    a.write("two.txt", "2")
    a.sync()  # seq 2 is now on the hub
    a.close()
    shutil.copy(tmp_path / "backup.db", a.state / "shoal.db")
    for suffix in ("-wal", "-shm"):
        (a.state / f"shoal.db{suffix}").unlink(missing_ok=True)
    from shoal.localstore import open_store
    from shoal.sync.engine import SyncEngine

    old_incarnation = open_store(a.state).incarnation_id
    a.store = open_store(a.state)
    a.engine = SyncEngine(a.config, a.store, a.hub)
    a.write("three.txt", "3")  # the restored store records this under the reused seq 2
    more = [f"more-{i}.txt" for i in range(5)]
    for name in more:
        a.write(name, name)
    report = a.sync()
    assert report.ok, report.error
    assert a.store.incarnation_id != old_incarnation
    b.sync()
    a.sync()
    heads = assert_converged([a, b])
    assert set(heads) == {"one.txt", "two.txt", "three.txt", *more}


def test_symlinks_sync_as_links_never_followed(trio, tmp_path):
    a, b, _ = trio
    outside = tmp_path / "outside-secret.txt"
    outside.write_text("not to be synced")
    a.write("real.txt", "target content")
    os.symlink("real.txt", a.root / "link-to-real")
    os.symlink(str(outside), a.root / "link-outside")
    a.sync()
    b.sync()
    assert os.readlink(b.root / "link-to-real") == "real.txt"
    assert os.readlink(b.root / "link-outside") == str(outside)  # the link text, not the file
    index = {f.path: f for f in b.store.iter_files("docs")}
    assert index["link-outside"].kind == "symlink" and index["link-outside"].target == str(outside)
    assert outside.read_text() == "not to be synced"
    assert_converged([a, b])


def test_push_reads_every_page_of_the_outbox(tmp_path, hub, monkeypatch):
    """Regression: a push read one page of pending rows (100,000) and reported success with the
    rest still waiting. A page of 3 makes 7 changes (one of them a conflict) span several pages."""
    import shoal.sync.engine as engine

    monkeypatch.setattr(engine, "PUSH_PAGE", 3)
    a, b = Device(tmp_path, "alpha", hub), Device(tmp_path, "beta", hub)
    try:
        b.write("f0.txt", "beta's version", mtime=2_000_000_100)
        b.sync()
        for i in range(7):
            a.write(f"f{i}.txt", f"alpha {i}", mtime=2_000_000_000)
        report = a.sync()
        assert a.store.pending_count("docs") == 0
        assert report.folders[0].waiting == 0
        assert report.folders[0].pushed == 7
        b.sync()
        assert {f"f{i}.txt" for i in range(7)} <= set(b.files())
        sync_all([a, b])
        assert_converged([a, b])
    finally:
        a.close()
        b.close()
