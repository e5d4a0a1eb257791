"""Three devices, one real PostgreSQL hub: the sync semantics of SPEC.md end to end."""

from __future__ import annotations

import os

import pytest

from devices import Device, assert_converged, sync_all


@pytest.fixture
def trio(tmp_path, hub_url):
    ds = [Device(tmp_path, n, hub_url) for n in ("alpha", "beta", "gamma")]
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
