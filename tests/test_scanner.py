"""shoal.scan.scanner: what a scan records, what it refuses to record, and when it pauses a folder.

Real folders under tmp_path and a real store; only the failure injections (unreadable file as
root, vanishing/changing file during hashing) patch the scanner's own names.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
import time
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoal.scan import scanner
from shoal.core.paths import FOLDER_ID_FILE, SHOAL_DIR
from shoal.scan.scanner import scan_folder
from shoal.localstore import open_store
from shoal.model import FileState

FID = "docs"
NS = 1_000_000_000


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()




def write(root: Path, rel: str, data: bytes | str, *, mtime_ns: int | None = None) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    if mtime_ns is not None:
        os.utime(p, ns=(mtime_ns, mtime_ns))
    return p


def bump_mtime(p: Path, seconds: int = 5) -> None:
    """Move mtime clearly forward: a real edit seconds later, not within one timestamp tick."""
    st = os.lstat(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * NS), follow_symlinks=False)


def scan(store, root: Path, ignore=(), **kw):
    return scan_folder(store, FID, root, tuple(ignore), **kw)


def live_index(store) -> dict[str, str]:
    """Files and symlinks of the index (directories: tests/test_empty_dirs.py)."""
    return {f.path: f.sha256 for f in store.iter_files(FID, include_deleted=False, dirs=False)}


def outbox(store, after: int = 0, *, dirs: bool = False) -> list[tuple[str, bool, str | None]]:
    """(path, deleted, moved_from) of every outbox row after seq `after`, in seq order (those of
    directories only with `dirs`)."""
    return [
        (p, bool(d), mv)
        for p, d, mv in store.conn.execute(
            "SELECT path, deleted, moved_from FROM outbox WHERE folder_id=? AND seq>?"
            + ("" if dirs else " AND kind <> 'dir'") + " ORDER BY seq",
            (FID, after),
        )
    ]


def live_dirs(store) -> set[str]:
    return {f.path for f in store.iter_files(FID, include_deleted=False, dirs=True)}


def disk_dirs(root: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, _ in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != SHOAL_DIR]
        out.update(unicodedata.normalize("NFC", (Path(dirpath) / d).relative_to(root).as_posix()) for d in dirnames)
    return out


def last_seq(store) -> int:
    return store.conn.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]


def populate(root: Path, n: int) -> None:
    for i in range(n):
        write(root, f"d{i % 3}/f{i:02d}.txt", f"content {i}")


# -- first scan, rescan, changes --------------------------------------------------------


def test_first_scan_records_adds_and_creates_the_marker(store, root):
    write(root, "a.txt", "alpha")
    write(root, "sub/b.txt", "beta")
    write(root, "sub/deeper/c.bin", b"\x00\x01")
    result = scan(store, root)
    assert (result.added, result.modified, result.deleted, result.paused) == (3, 0, 0, None)
    assert (root / FOLDER_ID_FILE).read_text().strip() == FID
    assert sorted(outbox(store)) == [("a.txt", False, None), ("sub/b.txt", False, None),
                                     ("sub/deeper/c.bin", False, None)]
    assert live_index(store) == {"a.txt": sha(b"alpha"), "sub/b.txt": sha(b"beta"),
                                 "sub/deeper/c.bin": sha(b"\x00\x01")}
    row = store.folder(FID)
    assert row.marker_seen and row.first_scan_at is not None and row.paused is None
    # The marker's directory is never indexed.
    assert not any(p.startswith(".shoal") for p in live_index(store))


def test_first_scan_creates_a_missing_folder(store, tmp_path):
    root = tmp_path / "not-yet"
    result = scan(store, root)
    assert result.paused is None
    assert (root / FOLDER_ID_FILE).read_text().strip() == FID


def test_rescan_with_nothing_changed_records_nothing(store, root):
    write(root, "a.txt", "alpha")
    write(root, "b/c.txt", "gamma")
    scan(store, root)
    before = last_seq(store)
    result = scan(store, root)
    assert result.changes == 0 and result.unchanged == 2
    assert outbox(store, before) == []


def test_modify_records_one_modified_row(store, root):
    write(root, "a.txt", "alpha")
    p = write(root, "b.txt", "beta")
    scan(store, root)
    before = last_seq(store)
    p.write_text("beta, edited")
    bump_mtime(p)
    result = scan(store, root)
    assert (result.added, result.modified, result.deleted) == (0, 1, 0)
    assert outbox(store, before) == [("b.txt", False, None)]
    assert live_index(store)["b.txt"] == sha(b"beta, edited")


def test_modify_with_same_size_is_detected(store, root):
    p = write(root, "a.txt", "aaaa")
    scan(store, root)
    before = last_seq(store)
    p.write_text("bbbb")
    bump_mtime(p)
    assert scan(store, root).modified == 1
    assert outbox(store, before) == [("a.txt", False, None)]


def test_touch_without_content_change_is_not_a_change(store, root):
    p = write(root, "a.txt", "alpha")
    scan(store, root)
    before = last_seq(store)
    bump_mtime(p, 60)
    result = scan(store, root)
    assert result.changes == 0
    assert outbox(store, before) == []
    # The index learned the new mtime, so the next scan does not hash it again.
    assert store.get_file(FID, "a.txt").mtime_ns == os.lstat(p).st_mtime_ns
    hashed = []
    real = scanner.sha256_file
    scanner_sha = lambda path, *a: hashed.append(path) or real(path, *a)  # noqa: E731
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(scanner, "sha256_file", scanner_sha)
        scan(store, root)
    assert hashed == []


def test_rewrite_with_same_content_and_new_inode_is_not_a_change(store, root):
    p = write(root, "a.txt", "alpha")
    scan(store, root)
    before = last_seq(store)
    tmp = write(root, "a.txt.new", "alpha")
    os.replace(tmp, p)  # an editor's atomic save
    bump_mtime(p)
    assert scan(store, root).changes == 0
    assert outbox(store, before) == []


def test_delete_records_a_tombstone(store, root):
    write(root, "a.txt", "alpha")
    p = write(root, "b.txt", "beta")
    scan(store, root)
    before = last_seq(store)
    p.unlink()
    result = scan(store, root)
    assert result.deleted == 1
    assert outbox(store, before) == [("b.txt", True, None)]
    tomb = store.get_file(FID, "b.txt")
    assert tomb.deleted and tomb.sha256 == sha(b"beta")
    assert live_index(store) == {"a.txt": sha(b"alpha")}
    # A tombstone is not deleted again.
    before = last_seq(store)
    assert scan(store, root).changes == 0
    assert outbox(store, before) == []


def test_a_deleted_file_that_comes_back_is_an_add(store, root):
    p = write(root, "a.txt", "alpha")
    scan(store, root)
    p.unlink()
    scan(store, root)
    before = last_seq(store)
    write(root, "a.txt", "alpha again")
    result = scan(store, root)
    assert (result.added, result.modified) == (1, 0)
    assert outbox(store, before) == [("a.txt", False, None)]
    assert not store.get_file(FID, "a.txt").deleted


def test_first_scan_never_emits_deletions(store, root):
    # The index knows files (from an earlier hub, re-announced) that this folder does not hold,
    # but this device has never completed a scan of the folder.
    store.ensure_folder(FID, str(root))
    for name in ("ghost1.txt", "ghost2.txt", "here.txt"):
        store.put_file(FileState(FID, name, "file", 5, 1_700_000_000 * NS, 1, sha(name.encode()), version=3))
    store.put_file(FileState(FID, "old-tomb.txt", "file", 0, 1_700_000_000 * NS, 0, sha(b"t"), True, version=2))
    store.reset_for_new_hub(FID, int(time.time()))
    assert store.folder(FID).first_scan_at is None
    write(root, "here.txt", "here.txt")
    write(root, "new.txt", "new")
    before = last_seq(store)

    result = scan(store, root)

    assert result.deleted == 0
    rows = outbox(store, before)
    assert not any(deleted for _, deleted, _ in rows)
    assert [p for p, _, _ in rows] == ["new.txt"]
    assert all(not c.deleted for c in store.pending_changes(FID))
    for ghost in ("ghost1.txt", "ghost2.txt"):
        assert not store.get_file(FID, ghost).deleted
    assert store.folder(FID).first_scan_at is not None


def test_move_is_an_add_with_moved_from_and_a_delete(store, root):
    write(root, "old/name.txt", "the same content")
    write(root, "other.txt", "other")
    scan(store, root)
    before = last_seq(store)
    (root / "new").mkdir()
    os.rename(root / "old/name.txt", root / "new/name.txt")
    result = scan(store, root)
    assert (result.added, result.deleted, result.moved) == (1, 1, 1)
    assert sorted(outbox(store, before)) == [("new/name.txt", False, "old/name.txt"),
                                             ("old/name.txt", True, None)]
    assert live_index(store) == {"new/name.txt": sha(b"the same content"), "other.txt": sha(b"other")}


# -- what is not indexed ---------------------------------------------------------------


def test_ignore_patterns_and_the_shoal_dir_are_never_indexed(store, root):
    for rel in ["keep.txt", "a.tmp", "sub/b.tmp", "build/out.o", "sub/build/x.o", "app.log",
                "keep.log", "sub/ok.md", "builder.txt", ".shoal/tmp/partial.bin", ".shoal/trash/x.txt",
                "sub/.shoal/evil.txt"]:
        write(root, rel, rel)
    ignore = ["*.tmp", "build/", "*.log", "!keep.log"]
    result = scan(store, root, ignore)
    assert set(live_index(store)) == {"keep.txt", "keep.log", "sub/ok.md", "builder.txt"}
    assert {p for p, _, _ in outbox(store)} == {"keep.txt", "keep.log", "sub/ok.md", "builder.txt"}
    assert result.added == 4


def test_a_newly_ignored_file_is_not_deleted(store, root):
    write(root, "a.txt", "a")
    write(root, "b.tmp", "b")
    scan(store, root)
    before = last_seq(store)
    result = scan(store, root, ["*.tmp"])
    assert result.deleted == 0
    assert outbox(store, before) == []
    assert not store.get_file(FID, "b.tmp").deleted


def test_symlinks_are_recorded_as_symlinks_never_followed(store, root, tmp_path):
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "secret.txt").write_text("outside the folder")
    (outside / "deep" / "more.txt").write_text("more")
    write(root, "target.txt", "real file")
    os.symlink("target.txt", root / "link.txt")
    os.symlink(str(outside), root / "outlink")
    os.symlink("does/not/exist", root / "dangling")

    scan(store, root)

    index = {f.path: f for f in store.iter_files(FID)}
    assert set(index) == {"target.txt", "link.txt", "outlink", "dangling"}
    link = index["link.txt"]
    assert (link.kind, link.target, link.sha256) == ("symlink", "target.txt", sha(b"target.txt"))
    out = index["outlink"]
    assert (out.kind, out.target) == ("symlink", str(outside))
    assert index["dangling"].kind == "symlink" and index["dangling"].target == "does/not/exist"
    assert index["target.txt"].kind == "file"
    assert not any(p.startswith("outlink/") for p in index)


def test_retargeting_a_symlink_is_a_change(store, root):
    os.symlink("one", root / "link")
    scan(store, root)
    before = last_seq(store)
    (root / "link").unlink()
    os.symlink("two", root / "link")
    bump_mtime(root / "link")
    assert scan(store, root).modified == 1
    assert outbox(store, before) == [("link", False, None)]
    assert store.get_file(FID, "link").target == "two"


def test_fifos_are_not_indexed(store, root):
    write(root, "a.txt", "a")
    os.mkfifo(root / "pipe")
    scan(store, root)
    assert set(live_index(store)) == {"a.txt"}


# -- per-path problems -----------------------------------------------------------------


def make_unreadable(monkeypatch, path: Path) -> None:
    """Make `path` unreadable for the scanner.

    chmod 000 is the real thing, but root (as these tests often run) reads through it. Then
    the scanner module's `open` is replaced for that one path only: it raises the same
    PermissionError the kernel would, and every other file is opened for real. A FIFO would
    not do: the scanner skips FIFOs before it ever tries to read them.
    """
    path.chmod(0)
    if not os.access(path, os.R_OK):
        return
    path.chmod(0o644)
    target = os.fspath(path)
    real_open = open

    def fake_open(file, *args, **kwargs):
        if os.fspath(file) == target:
            raise PermissionError(errno.EACCES, "Permission denied", target)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(scanner, "open", fake_open, raising=False)


def make_readable(monkeypatch, path: Path) -> None:
    path.chmod(0o644)
    monkeypatch.delattr(scanner, "open", raising=False)


def test_an_unreadable_file_is_an_error_and_the_rest_is_indexed(store, root, monkeypatch):
    write(root, "a.txt", "a")
    secret = write(root, "m/secret.txt", "secret")
    write(root, "z.txt", "z")
    make_unreadable(monkeypatch, secret)

    result = scan(store, root)

    assert result.errors == 1 and result.added == 2
    assert set(live_index(store)) == {"a.txt", "z.txt"}
    assert {p for p, _, _ in outbox(store)} == {"a.txt", "z.txt"}
    errs = store.errors(FID)
    assert [(e.path, e.kind, e.retries) for e in errs] == [("m/secret.txt", "read", 0)]
    assert "denied" in errs[0].message.lower()

    scan(store, root)  # still unreadable: retried, counted
    assert [e.retries for e in store.errors(FID)] == [1]

    make_readable(monkeypatch, secret)
    result = scan(store, root)
    assert result.added == 1
    assert live_index(store)["m/secret.txt"] == sha(b"secret")
    assert store.errors(FID) == []


def test_an_indexed_file_that_becomes_unreadable_is_not_deleted(store, root, monkeypatch):
    write(root, "a.txt", "a")
    p = write(root, "b.txt", "b")
    scan(store, root)
    before = last_seq(store)
    p.write_text("bb")
    bump_mtime(p)
    make_unreadable(monkeypatch, p)
    result = scan(store, root)
    assert result.errors == 1 and result.deleted == 0
    assert outbox(store, before) == []
    assert store.get_file(FID, "b.txt").sha256 == sha(b"b") and not store.get_file(FID, "b.txt").deleted


def test_a_file_vanishing_while_hashed_is_an_error_and_the_scan_goes_on(store, root, monkeypatch):
    write(root, "a.txt", "a")
    write(root, "vanish.txt", "soon gone")
    write(root, "z.txt", "z")
    real = scanner.sha256_file

    def vanishing(path, *args):
        if path.endswith("vanish.txt"):
            os.unlink(path)
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        return real(path, *args)

    monkeypatch.setattr(scanner, "sha256_file", vanishing)
    result = scan(store, root)
    assert result.errors == 1 and result.added == 2
    assert set(live_index(store)) == {"a.txt", "z.txt"}
    assert [(e.path, e.kind) for e in store.errors(FID)] == [("vanish.txt", "read")]
    assert "vanished" in store.errors(FID)[0].message
    # the next scan is the retry: the file is gone for good, so the error is too
    monkeypatch.setattr(scanner, "sha256_file", real)
    scan(store, root)
    assert store.errors(FID) == []


@pytest.mark.parametrize("how", ["grows", "mtime"])
def test_a_file_changing_while_hashed_is_deferred(store, root, monkeypatch, how):
    write(root, "a.txt", "a")
    busy = write(root, "busy.log", "line 1\n")
    real = scanner.sha256_file

    def changing(path, *args):
        digest = real(path, *args)
        if path.endswith("busy.log"):
            if how == "grows":
                with open(path, "a") as f:
                    f.write("line 2\n")
            else:
                bump_mtime(Path(path))
        return digest

    monkeypatch.setattr(scanner, "sha256_file", changing)
    result = scan(store, root)
    assert result.deferred == 1 and result.added == 1
    assert set(live_index(store)) == {"a.txt"}
    assert [p for p, _, _ in outbox(store)] == ["a.txt"]
    assert store.errors(FID) == []

    monkeypatch.setattr(scanner, "sha256_file", real)
    result = scan(store, root)  # quiet now: picked up
    assert result.added == 1
    assert live_index(store)["busy.log"] == sha(busy.read_bytes())


def test_an_nfd_name_is_indexed_with_its_nfc_path(store, root):
    nfd_dir = unicodedata.normalize("NFD", "Résumés")
    nfd_file = unicodedata.normalize("NFD", "café.txt")
    assert nfd_file != "café.txt"
    write(root, f"{nfd_dir}/{nfd_file}", "coffee")
    scan(store, root)
    nfc = unicodedata.normalize("NFC", "Résumés/café.txt")
    assert live_index(store) == {nfc: sha(b"coffee")}
    assert [p for p, _, _ in outbox(store)] == [nfc]
    before = last_seq(store)
    assert scan(store, root).changes == 0  # stable: the NFD name on disk matches the NFC row
    assert outbox(store, before) == []
    (root / nfd_dir / nfd_file).unlink()
    scan(store, root)
    assert outbox(store, before) == [(nfc, True, None)]


# -- safety rails ----------------------------------------------------------------------


def test_mass_delete_pauses_the_folder_until_allowed(store, root):
    populate(root, 20)
    scan(store, root)
    before = last_seq(store)
    victims = sorted(root.glob("d*/f*.txt"))[:15]
    for p in victims:
        p.unlink()

    result = scan(store, root)
    assert result.paused and result.paused.startswith("mass-delete")
    assert store.folder(FID).paused.startswith("mass-delete")
    assert result.deleted == 0
    assert outbox(store, before) == []
    assert len(live_index(store)) == 20

    again = scan(store, root)  # still paused: nothing happens without the user's go-ahead
    assert again.paused and again.paused.startswith("mass-delete")
    assert outbox(store, before) == []

    allowed = scan(store, root, allow_mass_delete=True)
    assert allowed.paused is None and allowed.deleted == 15
    assert store.folder(FID).paused is None
    rows = outbox(store, before)
    assert len(rows) == 15 and all(deleted for _, deleted, _ in rows)
    assert len(live_index(store)) == 5


@pytest.mark.parametrize("total,deleted,paused", [
    (20, 5, False),
    (20, 10, False),   # not more than 10
    (24, 12, False),   # exactly half is not more than half
    (20, 11, True),
    (21, 11, True),
    (30, 16, True),
])
def test_mass_delete_threshold(store, root, total, deleted, paused):
    populate(root, total)
    scan(store, root)
    before = last_seq(store)
    for p in sorted(root.glob("d*/f*.txt"))[:deleted]:
        p.unlink()
    result = scan(store, root)
    assert bool(result.paused) is paused
    tombstones = [r for r in outbox(store, before) if r[1]]
    assert len(tombstones) == (0 if paused else deleted)


def test_missing_marker_after_first_scan_pauses_and_deletes_nothing(store, root):
    populate(root, 6)
    scan(store, root)
    before = last_seq(store)
    marker = root / FOLDER_ID_FILE
    marker.unlink()
    (root / "d0" / "f00.txt").unlink()

    result = scan(store, root)
    assert result.paused and "marker" in result.paused
    assert store.folder(FID).paused == result.paused
    assert outbox(store, before) == []
    assert not marker.exists(), "the marker is not silently recreated"
    assert len(live_index(store)) == 6

    marker.write_text(FID + "\n")  # the user puts it back: syncing resumes
    result = scan(store, root)
    assert result.paused is None and store.folder(FID).paused is None
    assert outbox(store, before) == [("d0/f00.txt", True, None)]


def test_missing_folder_pauses_and_is_not_recreated(store, root, tmp_path):
    populate(root, 4)
    scan(store, root)
    before = last_seq(store)
    root.rename(tmp_path / "unmounted")
    result = scan(store, root)
    assert result.paused and "missing" in result.paused
    assert store.folder(FID).paused == result.paused
    assert not root.exists()
    assert outbox(store, before) == []
    assert len(live_index(store)) == 4


def test_a_marker_naming_another_folder_pauses(store, root):
    write(root, "a.txt", "a")
    marker = write(root, FOLDER_ID_FILE, "someone-else\n")
    result = scan(store, root)
    assert result.paused and "someone-else" in result.paused
    assert store.folder(FID).paused == result.paused
    assert live_index(store) == {} and outbox(store) == []
    assert marker.read_text() == "someone-else\n"
    assert store.folder(FID).first_scan_at is None


def test_min_age_defers_files_being_written(store, root):
    now = time.time()
    write(root, "old.txt", "old", mtime_ns=int((now - 600) * NS))
    write(root, "fresh.txt", "fresh", mtime_ns=int((now - 2) * NS))
    result = scan(store, root, now=now, min_age=10)
    assert result.deferred == 1 and result.added == 1
    assert set(live_index(store)) == {"old.txt"}
    result = scan(store, root, now=now + 30, min_age=10)
    assert result.added == 1
    assert set(live_index(store)) == {"old.txt", "fresh.txt"}


def test_an_implausible_mtime_alone_is_not_a_change(store, root):
    p = write(root, "a.txt", "alpha")
    scan(store, root)
    before = last_seq(store)
    os.utime(p, ns=(100 * NS, 100 * NS))  # 1970
    result = scan(store, root)
    assert result.changes == 0
    assert outbox(store, before) == []
    future = int((time.time() + 30 * 86400) * NS)
    os.utime(p, ns=(future, future))
    assert scan(store, root).changes == 0
    assert outbox(store, before) == []


def test_a_content_change_with_an_implausible_mtime_is_still_recorded(store, root):
    # Same size, new content, and an mtime from 1970 (an archive extracted over the file):
    # the implausible mtime must not hide the new content from sync.
    p = write(root, "a.txt", "aaaa")
    scan(store, root)
    before = last_seq(store)
    p.write_text("bbbb")
    os.utime(p, ns=(100 * NS, 100 * NS))
    result = scan(store, root)
    assert result.modified == 1
    assert outbox(store, before) == [("a.txt", False, None)]
    assert live_index(store)["a.txt"] == sha(b"bbbb")


# -- property: the index mirrors the disk ----------------------------------------------

NAMES = ["a", "b", "A", "é", "ß", "日本", "x.txt", "a b", "z-1", "ä.md", "a.b", "ü"]


def _compatible(path: tuple[str, ...], taken: set[tuple[str, ...]]) -> bool:
    """A file path fits beside `taken` if neither is a directory prefix of the other."""
    for other in taken:
        n = min(len(path), len(other))
        if path[:n] == other[:n]:
            return False
    return True


def _tree(paths: list[tuple[str, ...]], contents: list[bytes]) -> dict[tuple[str, ...], bytes]:
    out: dict[tuple[str, ...], bytes] = {}
    for path, data in zip(paths, contents):
        if _compatible(path, set(out)):
            out[path] = data
    return out


path_st = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map(tuple)
tree_st = st.builds(_tree, st.lists(path_st, max_size=10), st.lists(st.binary(max_size=40), min_size=10,
                                                                    max_size=10))


def disk_index(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != SHOAL_DIR]
        for name in filenames:
            full = Path(dirpath) / name
            rel = unicodedata.normalize("NFC", full.relative_to(root).as_posix())
            out[rel] = sha(full.read_bytes())
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=tree_st, data=st.data())
def test_index_mirrors_the_disk_through_random_mutations(tree, data):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "folder"
        root.mkdir()
        s = open_store(Path(tmp) / "state")
        try:
            for path, content in tree.items():
                write(root, "/".join(path), content)
            first = scan_folder(s, FID, root)
            assert first.errors == 0 and first.deferred == 0 and first.paused is None
            assert live_index(s) == disk_index(root)
            assert sorted(p for p, _, _ in outbox(s)) == sorted(disk_index(root))

            # Mutations: each existing file kept, modified or deleted; some new files added.
            deleted, modified, added = set(), {}, {}
            for path in sorted(tree):
                action = data.draw(st.sampled_from(["keep", "modify", "delete"]))
                rel = "/".join(path)
                if action == "delete":
                    (root / rel).unlink()
                    deleted.add(rel)
                elif action == "modify":
                    new = data.draw(st.binary(max_size=40))
                    write(root, rel, new)
                    bump_mtime(root / rel)
                    if new != tree[path]:
                        modified[rel] = new
            taken = set(tree)
            for path in data.draw(st.lists(path_st, max_size=5)):
                if _compatible(path, taken):
                    taken.add(path)
                    content = data.draw(st.binary(max_size=40))
                    write(root, "/".join(path), content)
                    added["/".join(path)] = content

            before = last_seq(s)
            second = scan_folder(s, FID, root)
            assert second.paused is None and second.errors == 0

            assert live_index(s) == disk_index(root)
            assert live_dirs(s) == disk_dirs(root)
            rows = outbox(s, before)
            assert sorted((p, d) for p, d, _ in rows) == sorted(
                [(p, True) for p in deleted] + [(p, False) for p in [*modified, *added]])
            assert (second.added, second.modified, second.deleted) == (len(added), len(modified), len(deleted))
            for p in deleted:
                assert s.get_file(FID, p).deleted
            # moved_from only ever names a deleted path with the same content.
            old_sha = {"/".join(k): sha(v) for k, v in tree.items()}
            index = live_index(s)
            for p, d, moved_from in rows:
                if moved_from is not None:
                    assert not d and moved_from in deleted and old_sha[moved_from] == index[p]
            third = scan_folder(s, FID, root)
            assert third.changes == 0
            assert outbox(s, last_seq(s)) == [] and last_seq(s) == before + len(outbox(s, before, dirs=True))
        finally:
            s.close()


# -- targeted scans: only the directories where the watcher saw events ------------------------


def test_targeted_scan_sees_changes_in_its_parts_only(store, root):
    for d in ("a", "b", "a/deep"):
        write(root, f"{d}/keep.txt", d)
    write(root, "top.txt", "top")
    scan(store, root)
    write(root, "a/new.txt", "new in a")          # event: file in a -> ("a", False)
    write(root, "b/unseen.txt", "no event here")  # no event reported: not looked at
    shutil.rmtree(root / "a" / "deep")             # event: directory a/deep deleted -> ("a/deep", True)
    write(root, "top.txt", "top edited")           # event: file at the root -> ("", False)
    result = scan(store, root, only=[("a", False), ("a/deep", True), ("", False)])
    assert (result.added, result.modified, result.deleted) == (1, 1, 1)
    assert "b/unseen.txt" not in live_index(store)
    assert "a/deep/keep.txt" not in live_index(store) and "a/keep.txt" in live_index(store)
    scan(store, root)  # the next full rescan catches what had no event
    assert live_index(store) == disk_index(root)


def test_targeted_scan_of_a_new_directory_is_recursive(store, root):
    write(root, "x.txt", "x")
    scan(store, root)
    write(root, "moved-in/sub/photo.jpg", "jpeg")  # a directory moved in: one event for it
    result = scan(store, root, only=[("moved-in", True)])
    assert result.added == 1 and live_index(store) == disk_index(root)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=tree_st, data=st.data())
def test_targeted_scan_of_the_event_dirs_equals_a_full_scan(tree, data):
    """Mutations reported as the watcher reports them (a file's directory; a removed or created
    directory itself, recursively): scanning only those parts leaves the index equal to the disk."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "folder"
        root.mkdir()
        for path, content in tree.items():
            write(root, "/".join(path), content)
        st_ = open_store(Path(tmp) / "state")
        scan_folder(st_, FID, root)
        events: list[tuple[str, bool]] = []
        files = sorted(disk_index(root))
        for _ in range(data.draw(st.integers(0, 6))):
            op = data.draw(st.sampled_from(["add", "modify", "delete", "rmdir"]))
            if op == "add":
                rel = data.draw(st.sampled_from(["n1.txt", "d1/n2.txt", "d1/d2/n3.txt", "zz/n4.txt"]))
                new_dirs = [p for p in Path(rel).parents if str(p) != "." and not (root / p).exists()]
                write(root, rel, data.draw(st.binary(max_size=20)) + b"!")
                if new_dirs:
                    events.append((new_dirs[-1].as_posix(), True))  # the outermost new directory
                else:
                    events.append((os.path.dirname(rel), False))
            elif files and op in ("modify", "delete"):
                rel = data.draw(st.sampled_from(files))
                if not (root / rel).is_file():
                    continue
                if op == "modify":
                    write(root, rel, (root / rel).read_bytes() + b"+")
                else:
                    (root / rel).unlink()
                events.append((os.path.dirname(rel), False))
            elif op == "rmdir":
                dirs = sorted({os.path.dirname(f) for f in files if "/" in f and (root / os.path.dirname(f)).is_dir()})
                if dirs:
                    d = data.draw(st.sampled_from(dirs))
                    shutil.rmtree(root / d)
                    events.append((d, True))
        os.utime(root, None)
        scan_folder(st_, FID, root, only=events, allow_mass_delete=True)
        assert live_index(st_) == disk_index(root)
        assert live_dirs(st_) == disk_dirs(root)
        st_.close()
