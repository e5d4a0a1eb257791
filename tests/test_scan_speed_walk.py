"""The scanner's walk and merge as a no-change rescan runs them: a directory's files are read as
runs (listdir, lstat relative to the directory) and a run equal to the index as a whole is
unchanged without a step per file (issue 14 item 2). What it must keep: the index's path order,
what is ignored or not synced, the exec bit where the filesystem has no modes, tombstones,
progress, and never following a symlink put where a directory was.

Real folders under tmp_path and a real store, as in tests/test_scanner.py.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from shoal.core.ignore import IgnoreRules
from shoal.model import KIND_EXEC, KIND_FILE, FsTraits
from shoal.scan import scanner
from shoal.scan.scanner import scan_folder, walk

FID = "docs"




def write(root: Path, rel: str, data: str = "x") -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(data)
    return p


def walked(root: Path, rules=(), **kw) -> list[str]:
    errors: list[tuple[str, OSError]] = []
    paths = [e.path for e in walk(root, IgnoreRules(rules), lambda rel, err: errors.append((rel, err)), **kw)]
    assert errors == []
    return paths


def test_the_walk_is_in_the_index_order_with_directories_between_files(root):
    # "a.b/" < "a.txt" < "a/" < "a0": a directory sorts as its name plus "/"
    for rel in ("a.txt", "a0", "a/x", "a.b/y", "a-/z", "b", "a/c/d", "a/c.txt"):
        write(root, rel)
    paths = walked(root)
    assert paths == sorted(paths, key=lambda p: p.encode())
    assert paths == ["a-/z", "a.b/y", "a.txt", "a/c.txt", "a/c/d", "a/x", "a0", "b"]


def test_non_ascii_names_are_walked_as_nfc_and_in_nfc_order(root):
    nfd = unicodedata.normalize("NFD", "é")
    for rel in (f"{nfd}.txt", "e.txt", "f.txt", f"{nfd}/in.txt"):
        write(root, rel)
    assert walked(root) == ["e.txt", "f.txt", "é.txt", "é/in.txt"]


def test_the_shoal_dir_in_any_case_and_fifos_are_not_walked(root):
    write(root, "a.txt")
    write(root, ".SHOAL/x")
    write(root, "sub/.ſhoal/y")  # long s: casefolds to ".shoal"
    os.mkfifo(root / "pipe")
    assert IgnoreRules(()).is_ignored_entry("sub/.ſhoal", ".ſhoal", True)
    assert walked(root) == ["a.txt"]
    assert walked(root, ["*.txt"]) == []


def test_a_directory_swapped_for_a_symlink_is_not_followed(root, tmp_path):
    outside = tmp_path / "outside"
    write(outside, "secret.txt")
    write(root, "sub/a.txt")
    write(root, "z.txt")
    errors: list[str] = []

    def swap(rel, _os_path):  # between seeing the directory and reading it
        if rel == "sub":
            os.rename(root / "sub", tmp_path / "sub-moved")
            os.symlink(outside, root / "sub")

    paths = [e.path for e in walk(root, IgnoreRules(()), lambda rel, err: errors.append(rel), on_dir=swap)]
    assert "sub/secret.txt" not in paths
    assert paths == ["z.txt"] and errors == ["sub"]


def test_a_rescan_after_changes_inside_large_runs_records_just_them(store, root):
    for i in range(300):
        write(root, f"d/f{i:03}.txt", f"content {i}")
    write(root, "d/sub/x.txt")
    write(root, "e/g.txt")
    assert scan_folder(store, FID, root).added == 302
    (root / "d" / "f100.txt").unlink()  # deleted: its row is a tombstone from now on
    write(root, "d/f150.txt", "changed content 150")
    os.utime(root / "d" / "f150.txt", ns=(1, 1))
    write(root, "d/f299b.txt", "new")
    os.mkfifo(root / "d" / "f200.pipe")
    r = scan_folder(store, FID, root)
    assert (r.added, r.modified, r.deleted, r.unchanged) == (1, 1, 1, 300)
    assert (r.files, r.errors) == (302, 0)
    r = scan_folder(store, FID, root)  # the tombstone sits inside a run now
    assert (r.changes, r.unchanged, r.files) == (0, 302, 302)
    write(root, "d/f100.txt", "back")
    r = scan_folder(store, FID, root)
    assert (r.added, r.changes, r.unchanged) == (1, 1, 302)


def test_without_modes_the_index_keeps_the_exec_bit_and_a_rescan_is_no_change(store, root):
    for i in range(5):
        write(root, f"bin/tool{i}")
    store.ensure_folder(FID, str(root))
    store.set_fs_traits(FID, str(root), FsTraits(folds_case=False, modes=False))
    scan_folder(store, FID, root)
    fs = store.get_file(FID, "bin/tool2")
    assert fs.kind == KIND_FILE
    store.put_file(fs._replace(kind=KIND_EXEC))  # as a pull from a device with modes leaves it
    r = scan_folder(store, FID, root)
    assert (r.changes, r.unchanged) == (0, 5)
    assert store.get_file(FID, "bin/tool2").kind == KIND_EXEC


def test_a_no_change_rescan_reports_progress_up_to_every_file(store, root):
    for i in range(600):
        write(root, f"d{i % 3}/f{i:03}.txt", str(i))
    scan_folder(store, FID, root)
    seen: list[tuple[int, int]] = []
    r = scan_folder(store, FID, root, progress=lambda files, nbytes, path: seen.append((files, nbytes)))
    assert r.unchanged == 600
    assert seen[-1] == (600, r.bytes) and len(seen) >= 3
    assert seen == sorted(seen)


def test_the_walk_kinds_agree_with_disk_kind(root):
    write(root, "plain")
    os.chmod(write(root, "tool"), 0o755)
    os.symlink("plain", root / "link")
    for modes in (True, False):
        for e in walk(root, IgnoreRules(()), lambda rel, err: None, modes=modes):
            assert e.kind == scanner.disk_kind(os.lstat(e.os_path), modes)


def test_indexing_clears_read_errors_without_a_statement_per_file(store, root):
    for i in range(50):
        write(root, f"f{i:02}.txt", str(i))
    statements: list[str] = []

    def trace(_cursor, sql, _bindings):
        statements.append(sql)
        return True

    store.conn.exec_trace = trace
    try:
        assert scan_folder(store, FID, root).added == 50
    finally:
        store.conn.exec_trace = None
    assert sum("DELETE FROM errors" in s for s in statements) == 0
    # a path that had a read error still loses it once it is read
    store.record_error(FID, "f07.txt", "read", "cannot read: Permission denied", 0, 60)
    write(root, "f07.txt", "changed")
    os.utime(root / "f07.txt", ns=(5, 5))
    assert scan_folder(store, FID, root).modified == 1
    assert store.errors(FID) == []
