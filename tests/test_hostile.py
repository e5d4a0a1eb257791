"""Malicious and hostile input at the receiving device: generated remote paths and metadata,
a symlink swapped in between check and write, a rogue device's forged content, a full disk,
clocks hours off.

The tests through the hub run with plain and with end-to-end encrypted folders (`both_ways`):
sealed, the rogue is a device of the space that knows the passphrase and seals its hostile values
(tests.rogue), so they reach the victim authenticated and must still be checked after opening.
The two tests that hand Changes straight to the Applier (below the sealing layer), and the full
disk (a local write failure, whatever the folder), run plain."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.devices import assert_converged
from tests.fixtures.devices import both_ways
from tests.rogue import BLOCK, Rogue
from shoal.core.paths import validate_remote_path
from shoal.errors import PathRefused
from shoal.model import Change
from shoal.sync.apply import Applier
from shoal.sync.folder_io import FolderWriter
from shoal.hub.client import open_hub
from shoal.sync.transfer import Downloader

CONTENT = b"payload from a rogue device"
SHA = hashlib.sha256(CONTENT).hexdigest()


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def rogue(hub_url):
    """A registered device pushing whatever it likes straight through the hub API (plain, with
    CONTENT on the hub, until `keyed`)."""
    hub = open_hub(hub_url, None, str(uuid.uuid4()), str(uuid.uuid4()))
    hub.register("rogue")
    hub.put_small_contents([(SHA, CONTENT)], BLOCK)
    r = Rogue(hub)
    yield r
    r.close()


def keyed(rogue: Rogue, victim) -> Rogue:
    """The rogue knows the victim folder's key if it has one (and has put CONTENT sealed)."""
    rogue.knows_key_of(victim)
    rogue.put_small_contents([(SHA, CONTENT)])
    return rogue


_path_chars = st.sampled_from(list("ab./\\:\x00 ~*?<>|") + ["..", ".shoal", "con", "é", "e\u0301", "/", "//"])
remote_paths = st.one_of(
    st.text(min_size=0, max_size=40),
    st.lists(_path_chars, min_size=1, max_size=12).map("".join),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=remote_paths, mtime=st.integers(min_value=-2**63, max_value=2**63 - 1))
@example(path="link-out/evil.txt", mtime=0)
@example(path="../escape.txt", mtime=0)
@example(path="/tmp/abs.txt", mtime=0)
@example(path="ok/fine.txt", mtime=1_700_000_000 * 10**9)
def test_generated_remote_paths_never_escape_the_folder(tmp_path_factory, rogue, path, mtime):
    sandbox = tmp_path_factory.mktemp("sandbox")
    root = sandbox / "folder"
    root.mkdir()
    (sandbox / "canary").mkdir()
    (root / "link-out").symlink_to(sandbox / "canary")  # a symlink inside pointing outside
    before_outside = _tree(sandbox) - {str(p.relative_to(sandbox)) for p in root.rglob("*")}
    from shoal.localstore import open_store

    store = open_store(sandbox / "state")
    store.ensure_folder("f", str(root))
    ch = Change("f", path, "file", len(CONTENT), mtime, SHA, version=10**9, device_id="rogue")
    with Applier(store, "f", root, lambda w: Downloader(rogue.hub, w), {"f": root}, now=lambda: 1.7e9) as ap:
        stats = ap.apply([ch])
    store.close()
    after_outside = _tree(sandbox) - {str(p.relative_to(sandbox)) for p in root.rglob("*")}
    assert after_outside - before_outside <= {"state", "state/shoal.db", "state/shoal.db-wal", "state/shoal.db-shm",
                                              "state/shoal.db.closed"}
    assert not any((sandbox / "canary").iterdir()), "a write escaped through the symlink"
    try:
        validate_remote_path(path)
        valid = not path.startswith("link-out/") and path != "link-out"
    except PathRefused:
        valid = False
    if valid:
        assert (root / path).read_bytes() == CONTENT and stats.written == 1
    else:
        assert stats.written == 0


def test_symlink_swapped_into_parent_between_check_and_write(tmp_path, rogue, monkeypatch):
    from shoal.localstore import open_store

    root = tmp_path / "folder"
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    store = open_store(tmp_path / "state")
    store.ensure_folder("f", str(root))
    real_flush = FolderWriter.flush_all

    def swap_then_flush(self):
        # The attack: after the path was checked, `sub` becomes a symlink to a directory outside.
        os.rename(root / "sub", root / "sub.orig")
        os.symlink(outside, root / "sub")
        real_flush(self)

    monkeypatch.setattr(FolderWriter, "flush_all", swap_then_flush)
    ch = Change("f", "sub/evil.txt", "file", len(CONTENT), 1_700_000_000 * 10**9, SHA, version=1,
                device_id="rogue")
    with Applier(store, "f", root, lambda w: Downloader(rogue.hub, w), {"f": root}, now=lambda: 1.7e9) as ap:
        ap.apply([ch])
    assert list(outside.iterdir()) == [], "the write followed the swapped-in symlink"
    # a fresh writer sees the symlink and refuses the path outright
    monkeypatch.setattr(FolderWriter, "flush_all", real_flush)
    ch2 = Change("f", "sub/evil2.txt", "file", len(CONTENT), 1_700_000_000 * 10**9, SHA, version=2,
                 device_id="rogue")
    with Applier(store, "f", root, lambda w: Downloader(rogue.hub, w), {"f": root}, now=lambda: 1.7e9) as ap:
        stats = ap.apply([ch2])
    assert stats.refused == 1 and list(outside.iterdir()) == []
    assert any(e.kind == "refused" and e.path == "sub/evil2.txt" for e in store.errors("f"))
    store.close()


@both_ways
def test_rogue_content_with_wrong_hash_never_reaches_the_folder(make_device, rogue):
    b = make_device("beta")
    keyed(rogue, b)
    # The rogue declares content S made of the blocks of other bytes. The hub checks one-block
    # contents against their hash; of two blocks it cannot tell (that would mean reading them all;
    # sealed, it cannot tell at all: a content id is a keyed hash).
    other = b"a second block"
    [other_name] = rogue.put_blocks([other])
    lie = hashlib.sha256(b"what the file should be").hexdigest()
    rogue.put_content(lie, len(CONTENT) + len(other), len(CONTENT), [rogue.block(CONTENT)[0], other_name])
    # And one whose block list fits its size (a full block and a short one), each block sound:
    # only the whole file's SHA-256, checked after the download, gives it away.
    full = os.urandom(BLOCK)
    lie_big = hashlib.sha256(b"what the big file should be").hexdigest()
    rogue.put_content(lie_big, BLOCK + len(other), BLOCK, rogue.put_blocks([full]) + [other_name])
    rows = [
        {"seq": 1, "path": "forged.txt", "kind": "file", "size": len(CONTENT) + len(other), "mtime_ns": 1,
         "sha256": lie, "target": None, "deleted": False, "base": None},
        {"seq": 2, "path": "good.txt", "kind": "file", "size": len(CONTENT), "mtime_ns": 1,
         "sha256": SHA, "target": None, "deleted": False, "base": None},
        {"seq": 3, "path": "x" * 300, "kind": "file", "size": len(CONTENT), "mtime_ns": 1,
         "sha256": SHA, "target": None, "deleted": False, "base": None},
        {"seq": 4, "path": "forged-big.bin", "kind": "file", "size": BLOCK + len(other), "mtime_ns": 1,
         "sha256": lie_big, "target": None, "deleted": False, "base": None},
    ]
    assert [r.status for r in rogue.push("docs", rows)] == ["accepted"] * 4
    b.sync()
    assert not (b.root / "forged.txt").exists() and not (b.root / "forged-big.bin").exists()
    assert b.read("good.txt") == CONTENT
    errors = {e.path: e for e in b.store.errors("docs")}
    assert errors["forged.txt"].kind == "block" and errors["x" * 300].kind == "refused"
    assert errors["forged-big.bin"].kind == "block"
    assert "does not match its SHA-256" in errors["forged-big.bin"].message
    assert not list((b.root / ".shoal" / "tmp").glob("*.part")) or all(
        p.stat().st_size == 0 for p in (b.root / ".shoal" / "tmp").glob("*.part"))


@both_ways
def test_rogue_row_is_refused_at_the_hub(make_device, rogue):
    from shoal.errors import HubError

    keyed(rogue, make_device("beta"))
    with pytest.raises(HubError):
        rogue.push("docs", [{"seq": 9, "path": "a", "kind": "fifo", "size": 1, "mtime_ns": 1,
                             "sha256": SHA, "target": None, "deleted": False, "base": None}])
    with pytest.raises(HubError):  # content not on the hub
        rogue.push("docs", [{"seq": 10, "path": "a", "kind": "file", "size": 1, "mtime_ns": 1,
                             "sha256": "0" * 64, "target": None, "deleted": False, "base": None}])


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_while_downloading(tmp_path, make_device, small_disk):
    a = make_device("alpha")
    b = make_device("beta", base=tmp_path / "b")
    b.root.rmdir()
    b.root = small_disk / "folder"
    b.root.mkdir()
    b.config = dataclasses.replace(b.config, folders=(dataclasses.replace(b.config.folders[0], path=b.root),))
    b.engine.config = b.config
    big = os.urandom(5 * 1024 * 1024)
    a.write("big.bin", big)
    a.write("small.txt", "fits")
    a.sync()
    report = b.sync()
    assert report.folders[0].failed == 1
    assert b.read("small.txt") == b"fits"
    assert not (b.root / "big.bin").exists()  # nothing half-written in place
    errors = {e.path: e for e in b.store.errors("docs")}
    assert "no space left" in errors["big.bin"].message
    subprocess.run(["mount", "-o", "remount,size=20m", str(small_disk)], check=True)
    b.engine.cycle(retry_now=True)
    assert b.read("big.bin") == big
    assert not b.store.errors("docs")
    assert_converged([a, b])


@both_ways
def test_clocks_hours_apart_still_converge(make_device):
    import time as _time

    a = make_device("alpha")
    b = make_device("beta")
    a.engine.clock = lambda: _time.time() + 5 * 3600  # alpha's clock runs five hours fast
    b.engine.clock = lambda: _time.time() - 3 * 3600
    a.write("f.txt", "v1")
    a.sync()
    b.sync()
    a.write("f.txt", "alpha", mtime=1_800_000_000)
    b.write("f.txt", "beta", mtime=1_800_000_100)
    a.sync()
    b.sync()
    a.sync()
    heads = assert_converged([a, b])
    assert a.read("f.txt") == b"beta"  # decided by the files' mtimes, not by the devices' clocks
    assert len(heads) == 2


# -- a hash that is a path (issue 9, item 5) ----------------------------------------------------


def _superuser(url: str):
    import psycopg

    conn = psycopg.connect(url, autocommit=True)
    # Hub triggers (and foreign keys) do not fire: the test plays a hub that lacks its checks.
    conn.execute("SET session_replication_role = replica")
    return conn


def _drop_hash_checks(conn) -> None:
    """Drop every CHECK of the hub's tables and domains, in this test database only, so that a
    hostile row can be injected as if the hub had never refused it (the hub refuses such hashes
    since issue 9; the device must not depend on it)."""
    for table, name in conn.execute(
            "SELECT conrelid::regclass::text, conname FROM pg_constraint c"
            " JOIN pg_namespace n ON n.oid = c.connamespace"
            " WHERE n.nspname = 'shoal' AND c.contype = 'c' AND c.conrelid <> 0").fetchall():
        conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for domain, name in conn.execute(
            "SELECT c.contypid::regtype::text, conname FROM pg_constraint c"
            " JOIN pg_namespace n ON n.oid = c.connamespace"
            " WHERE n.nspname = 'shoal' AND c.contype = 'c' AND c.contypid <> 0").fetchall():
        conn.execute(f'ALTER DOMAIN {domain} DROP CONSTRAINT "{name}"')


def _sha_tables(conn) -> list[str]:
    """Hub tables keyed by a content's sha256 (contents, and whatever records who may read one)."""
    return [t for (t,) in conn.execute(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = 'shoal'"
        " AND column_name = 'sha256' AND table_name LIKE 'content%'").fetchall()]


def _declare_content_as(conn, sha: str, hostile: str, blocks: list[str] | None = None) -> None:
    """Copy the hub's rows of content `sha` under the name `hostile` (optionally with another
    block list): whatever the columns of those tables are today."""
    for table in _sha_tables(conn):
        conn.execute(f"CREATE TEMP TABLE copy_rows AS SELECT * FROM shoal.{table} WHERE sha256 = %s", (sha,))
        conn.execute("UPDATE copy_rows SET sha256 = %s", (hostile,))
        if blocks is not None and table == "contents":
            conn.execute("UPDATE copy_rows SET blocks = %s", (blocks,))
        conn.execute(f"INSERT INTO shoal.{table} SELECT * FROM copy_rows ON CONFLICT DO NOTHING")
        conn.execute("DROP TABLE copy_rows")


@both_ways
def test_a_hash_that_is_a_path_never_names_a_file(tmp_path, hub_url, make_device, rogue):
    """A rogue row whose sha256 is `../../../escaped` (and a content declared under that name),
    and another whose content's block list names a path: both refused, logged and shown, nothing
    written outside the folder, the other files of the page arrive. Plain, the hub is made to
    serve them (its checks dropped); sealed, the rogue seals the hashes into its rows itself."""
    b = make_device("beta")
    b.sync()
    keyed(rogue, b)
    good = {"a-good.txt": b"first good file", "z-good.txt": b"last good file"}
    rogue.put_small_contents([(hashlib.sha256(v).hexdigest(), v) for v in good.values()])
    big = os.urandom(300 * 1024)  # several blocks: the resumable download path
    big_sha = hashlib.sha256(big).hexdigest()
    names = rogue.put_blocks([big[off:off + BLOCK] for off in range(0, len(big), BLOCK)])
    rogue.put_content(big_sha, len(big), BLOCK, names)

    evil = "../../../escaped"  # from .shoal/tmp: three levels up is the folder's parent
    evil_big = "../../../escaped-big"
    evil_blocks = "f" * 63 + "0"  # a well-formed hash whose block list names a path
    files = [("a-good.txt", good["a-good.txt"]), ("victim.txt", CONTENT), ("big-victim.bin", big),
             ("blocks-victim.bin", big), ("z-good.txt", good["z-good.txt"])]
    hostile = {"victim.txt": evil, "big-victim.bin": evil_big, "blocks-victim.bin": evil_blocks}
    rows = [{"seq": i, "path": p, "kind": "file", "size": len(v), "mtime_ns": 1_700_000_000 * 10**9,
             "sha256": hashlib.sha256(v).hexdigest(), "target": None, "deleted": False, "base": None}
            for i, (p, v) in enumerate(files, start=1)]
    if rogue.sealed:
        # The hub sees content ids only (well-formed whatever they name): the rogue declares its
        # contents under the hostile hashes and seals those into its rows. A block list naming a
        # path still takes a hub that lacks its checks.
        rogue.put_content(evil, len(CONTENT), BLOCK, [rogue.block(CONTENT)[0]])
        rogue.put_content(evil_big, len(big), BLOCK, names)
        with _superuser(hub_url) as su:
            _drop_hash_checks(su)
            _declare_content_as(su, rogue.hub_sha(big_sha), rogue.hub_sha(evil_blocks),
                                blocks=["../../../escaped-block"] * len(names))
        rows = [{**r, "sha256": hostile.get(r["path"], r["sha256"])} for r in rows]
    assert {r.status for r in rogue.push("docs", rows)} == {"accepted"}
    if not rogue.sealed:
        with _superuser(hub_url) as su:
            _drop_hash_checks(su)
            _declare_content_as(su, SHA, evil)
            _declare_content_as(su, big_sha, evil_big)
            _declare_content_as(su, big_sha, evil_blocks, blocks=["../../../escaped-block"] * len(names))
            for path, sha in hostile.items():
                for table in ("changes", "heads"):
                    su.execute(f"UPDATE shoal.{table} SET sha256 = %s WHERE path = %s", (sha, path))

    outside_before = set(os.listdir(tmp_path / "beta"))
    report = b.sync()
    assert set(os.listdir(tmp_path / "beta")) == outside_before, "a file was made outside the folder"
    assert not list(tmp_path.rglob("escaped*")), "a hash from the hub named a file"
    assert b.read("a-good.txt") == good["a-good.txt"] and b.read("z-good.txt") == good["z-good.txt"]
    for p in ("victim.txt", "big-victim.bin", "blocks-victim.bin"):
        assert not (b.root / p).exists()
    errors = {e.path: e for e in b.store.errors("docs")}
    assert errors["victim.txt"].kind == "refused" and "sha256" in errors["victim.txt"].message
    assert errors["big-victim.bin"].kind == "refused"
    assert errors["blocks-victim.bin"].kind in ("refused", "block")
    assert "block" in errors["blocks-victim.bin"].message
    assert report.folders[0].refused >= 2
    # Nothing in .shoal/tmp is named after hub data either.
    assert not [n for n in os.listdir(b.root / ".shoal" / "tmp") if "escaped" in n or ".." in n]


@both_ways
def test_hostile_hashes_in_a_retried_head_are_refused(tmp_path, hub_url, make_device, rogue):
    """The retry path (heads_at, after a failed write) validates hashes like the pull does."""
    b = make_device("beta")
    keyed(rogue, b)
    row = {"seq": 1, "path": "later.txt", "kind": "file", "size": len(CONTENT), "mtime_ns": 1,
           "sha256": SHA, "target": None, "deleted": False, "base": None}
    [first] = rogue.push("docs", [row])
    assert first.status == "accepted"
    b.sync()
    assert b.read("later.txt") == CONTENT
    evil = "../../../escaped-head"
    if rogue.sealed:
        # The rogue seals a new version of the path naming the hostile hash (its content
        # declared under it); the victim's pull cursor is moved past it, as if the changelog had
        # nothing new for it: only the retried head (heads_at) serves it.
        rogue.put_content(evil, len(CONTENT), BLOCK, [rogue.block(CONTENT)[0]])
        assert rogue.push("docs", [{**row, "seq": 2, "sha256": evil, "base": first.version}])[0].status == "accepted"
        with _superuser(hub_url) as su:
            [(last,)] = su.execute("SELECT max(id) FROM shoal.changes").fetchall()
        b.store.update_folder("docs", pull_cursor=last)
    else:
        with _superuser(hub_url) as su:
            _drop_hash_checks(su)
            _declare_content_as(su, SHA, evil)
            su.execute("UPDATE shoal.heads SET sha256 = %s, version = version + 1000"
                       " WHERE path = 'later.txt'", (evil,))
    b.store.record_error("docs", "later.txt", "write", "disk full (test)", 0, 0)
    b.engine.cycle(retry_now=True)
    assert not list(tmp_path.rglob("escaped*"))
    assert b.read("later.txt") == CONTENT
    assert any(e.path == "later.txt" and e.kind == "refused" for e in b.store.errors("docs"))
