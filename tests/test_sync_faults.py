"""Faults and safety rails at the device level, through the engine and a real PostgreSQL hub:
rogue paths, corrupt blocks, interrupted transfers, a restarted or re-created hub, the
newest-wins policy, send-only and receive-only folders, the mass-delete and marker guards,
and random edit/sync schedules on three devices that must converge without losing a version.

Most run with plain and with end-to-end encrypted folders (`both_ways`): then the rogue device
seals its hostile rows with the folder's key (tests.rogue), corrupt and missing blocks are the
sealed ones, and the hub's rows are found by their sealed path or content id."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg.conninfo import make_conninfo

from tests.devices import Device, assert_converged, sync_all
from tests.fixtures.devices import TEST_PASSPHRASE, both_ways, passphrase_for
from tests.rogue import Rogue, folder_sealer
from shoal.core.blocks import block_ranges
from shoal.errors import HubError, HubUnreachable
from shoal.sync import transfer
from shoal.hub.client import Hub, connect, open_hub
from shoal.hub.schema import hub_init

FOLDER = "docs"
BLOCK = 128 * 1024


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _owner(url: str) -> psycopg.Connection:
    """The hub owner's connection, looking at the default space (row level security is forced,
    so an owner that is not a superuser sees a space's rows only with it set)."""
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("SELECT set_config('shoal.space', 'default', false)")
    return conn


def _sealer(d: Device):
    """The sealer of d's folder, None if it is not encrypted."""
    return folder_sealer(d) if d.config.folders[0].encrypted else None


def _hub_block(sealer, data: bytes) -> str:
    """The hub's name of a block: its SHA-256, or (sealed) the SHA-256 of the sealed block."""
    return sealer.seal_block(data)[0] if sealer else _sha(data)


def _trash_shas(d: Device) -> set[str]:
    t = d.root / ".shoal" / "trash"
    return {_sha(p.read_bytes()) for p in t.rglob("*") if p.is_file() and not p.is_symlink()} if t.exists() else set()


def _trash_contents(d: Device) -> list[bytes]:
    t = d.root / ".shoal" / "trash"
    return [p.read_bytes() for p in t.rglob("*") if p.is_file()] if t.exists() else []


@pytest.fixture
def devices(make_device):
    """devices(name, **kw): a Device of the test's hub (encrypted when `encryption` is "sealed")."""
    return make_device


# -- rogue paths -------------------------------------------------------------------------------


@both_ways
def test_rogue_paths_are_refused_and_the_good_files_arrive(tmp_path, hub_url, devices):
    b = devices("beta")
    canary = tmp_path / "canary"
    canary.mkdir()
    # On the receiving device, a directory symlink inside the folder that points outside it.
    (b.root / "link").symlink_to(canary, target_is_directory=True)
    b.sync()

    rogue = Rogue(open_hub(hub_url, None, str(uuid.uuid4()), str(uuid.uuid4()))).knows_key_of(b)
    payload = b"written by a rogue device"
    rogue.hub.register("rogue")
    rogue.put_small_contents([(_sha(payload), payload)], BLOCK)
    # b.root is tmp/beta/folder: these would land in tmp/canary if followed.
    bad = [
        str(canary / "absolute.txt"),
        "../../canary/dotdot.txt",
        "a/../../../canary/inner-dotdot.txt",
        "a\\b.txt",
        "C:x.txt",
        "a//b.txt",
        ".",
        "./x.txt",
        ".shoal/x",
        ".shoal/folder-id",
        "x/.shoal/y",
        "trailing.",
        "con",
        "link/through-symlink.txt",
    ]
    if rogue.sealed:
        # The hub only sees the sealed path: it takes a NUL byte the device must refuse.
        bad.append("nul\x00.txt")
    good = {"good.txt": b"good one", "sub/dir/good2.txt": b"good two"}
    rogue.put_small_contents([(_sha(v), v) for v in good.values()], BLOCK)
    rows = []
    for seq, path in enumerate(list(good) + bad, start=1):
        data = good.get(path, payload)
        rows.append({"seq": seq, "path": path, "kind": "file", "size": len(data), "mtime_ns": 1_700_000_000 * 10**9,
                     "sha256": _sha(data), "target": None, "deleted": False, "base": None,
                     "moved_from": None, "conflict_of": None})
    # Interleave: good files first and last, so a refusal cannot hide them either way.
    rows.append({**rows[0], "seq": len(rows) + 1, "path": "zz-last.txt"})
    good["zz-last.txt"] = good["good.txt"]
    assert {r.status for r in rogue.push(FOLDER, rows)} == {"accepted"}
    if not rogue.sealed:
        # A NUL byte cannot even be stored by the hub (text and jsonb refuse it).
        with pytest.raises(HubError):
            rogue.push(FOLDER, [{**rows[0], "seq": 999, "path": "nul\x00.txt"}])
    rogue.close()

    report = b.sync()
    assert report.ok
    assert list(canary.iterdir()) == [], "a rogue path escaped the folder"
    for path, data in good.items():
        assert b.read(path) == data
    on_disk = b.files()
    assert set(on_disk) == set(good) | {"link"}, "a refused path was written"
    assert (b.root / ".shoal" / "folder-id").read_text().strip() == FOLDER
    assert not (b.root / ".shoal" / "x").exists()
    refused = {e.path for e in b.store.errors(FOLDER) if e.kind == "refused"}
    assert set(bad) <= refused, f"not recorded as refused: {set(bad) - refused}"
    assert report.folders[0].refused == len(bad)
    # Refusals are permanent and do not block the next cycle.
    again = b.sync()
    assert again.ok and list(canary.iterdir()) == [] and set(b.files()) == set(good) | {"link"}


# -- corrupt and interrupted transfers ---------------------------------------------------------------


@both_ways
def test_corrupt_block_never_reaches_the_folder_and_is_fetched_again(hub_url, devices, monkeypatch):
    a, b = devices("alpha"), devices("beta")
    big = os.urandom(600 * 1024)
    a.write("big.bin", big)
    a.write("small.txt", "small file")
    a.write("sub/other.txt", "another")
    a.sync()
    sealer = _sealer(a)
    blocks = [_hub_block(sealer, big[o:o + n]) for o, n in block_ranges(len(big))]
    assert len(blocks) == 5
    victim = blocks[2]
    with _owner(hub_url) as conn:
        original = conn.execute("SELECT data FROM shoal.blocks WHERE sha256 = %s", (victim,)).fetchone()[0]
        conn.execute("UPDATE shoal.blocks SET data = %s WHERE sha256 = %s", (os.urandom(len(original)), victim))

    real_get_blocks = Hub.get_blocks
    asked: list[str] = []

    def recording_get_blocks(self, shas):
        asked.extend(shas)
        return real_get_blocks(self, shas)

    monkeypatch.setattr(Hub, "get_blocks", recording_get_blocks)
    b.sync()
    assert not (b.root / "big.bin").exists(), "a file with a corrupt block reached the folder"
    assert asked.count(victim) == 2, "the corrupt block was not refused and fetched again"
    assert b.read("small.txt") == b"small file" and b.read("sub/other.txt") == b"another"
    kinds = {e.path: e.kind for e in b.store.errors(FOLDER)}
    assert kinds.get("big.bin") == "block"
    assert b.store.get_file(FOLDER, "big.bin") is None

    with _owner(hub_url) as conn:
        conn.execute("UPDATE shoal.blocks SET data = %s WHERE sha256 = %s", (original, victim))
    b.sync(retry_now=True)  # an explicit sync retries failed writes at once
    assert b.read("big.bin") == big
    assert not any(e.path == "big.bin" for e in b.store.errors(FOLDER))
    assert_converged([a, b])


def test_block_corrupted_in_transit_is_fetched_again_in_the_same_cycle(devices, monkeypatch):
    a, b = devices("alpha"), devices("beta")
    big = os.urandom(600 * 1024)
    a.write("big.bin", big)
    a.sync()
    victim = _hub_block(_sealer(a), big[BLOCK:2 * BLOCK])
    real_get_blocks = Hub.get_blocks
    damaged: list[str] = []

    def flaky_get_blocks(self, shas):
        got = real_get_blocks(self, shas)
        if victim in got and not damaged:  # the first copy of the block arrives damaged
            damaged.append(victim)
            got[victim] = b"\xff" + got[victim][1:]
        return got

    monkeypatch.setattr(Hub, "get_blocks", flaky_get_blocks)
    report = b.sync()
    assert damaged
    assert b.read("big.bin") == big
    assert report.folders[0].failed == 0 and not b.store.errors(FOLDER)


@both_ways
def test_interrupted_download_resumes(hub_url, devices, monkeypatch):
    monkeypatch.setattr(transfer, "GROUP_BYTES", 512 * 1024)  # several round trips for one file
    a, b = devices("alpha"), devices("beta")
    big = os.urandom(3 * 1024 * 1024)
    a.write("big.bin", big)
    a.sync()

    real_get_blocks = Hub.get_blocks
    calls = {"n": 0, "bytes": 0}

    def failing_get_blocks(self, shas):
        got = real_get_blocks(self, shas)
        if got:
            calls["n"] += 1
            if calls["n"] > 1:
                raise HubUnreachable("hub unreachable: cut by the test")
            calls["bytes"] += sum(len(v) for v in got.values())
        return got

    monkeypatch.setattr(Hub, "get_blocks", failing_get_blocks)
    with pytest.raises(HubUnreachable):
        b.sync()
    assert not (b.root / "big.bin").exists()
    part = b.root / ".shoal" / "tmp" / transfer.part_name(_sha(big))
    assert 0 < part.stat().st_size < len(big)

    fetched = {"bytes": 0}

    def counting_get_blocks(self, shas):
        got = real_get_blocks(self, shas)
        fetched["bytes"] += sum(len(v) for v in got.values())
        return got

    monkeypatch.setattr(Hub, "get_blocks", counting_get_blocks)
    b.sync()
    assert b.read("big.bin") == big
    with _owner(hub_url) as conn:  # what the hub stores of it (sealed blocks are a little longer)
        [(stored,)] = conn.execute("SELECT sum(octet_length(data)) FROM shoal.blocks").fetchall()
    assert 0 < fetched["bytes"] < stored, "the download started over"
    # exactly the blocks the first attempt lacked: all but its first group (4 of the 24 blocks)
    assert calls["bytes"] * 6 == stored and fetched["bytes"] == stored - calls["bytes"]
    assert not part.exists()
    assert_converged([a, b])


@both_ways
def test_interrupted_upload_resumes_without_resending_blocks(hub_url, devices, monkeypatch):
    monkeypatch.setattr(transfer, "GROUP_BYTES", 512 * 1024)
    a, b = devices("alpha"), devices("beta")
    big = os.urandom(3 * 1024 * 1024)
    a.write("big.bin", big)
    sealer = _sealer(a)  # (sealed: the folder's key is made on the hub here, before any sync)
    all_blocks = {_hub_block(sealer, big[o:o + n]) for o, n in block_ranges(len(big))}

    real_put_blocks = Hub.put_blocks
    first: list[str] = []

    def failing_put_blocks(self, blocks):
        if first:
            raise HubUnreachable("hub unreachable: cut by the test")
        first.extend(s for s, _ in blocks)
        return real_put_blocks(self, blocks)

    monkeypatch.setattr(Hub, "put_blocks", failing_put_blocks)
    with pytest.raises(HubUnreachable):
        a.sync()
    assert first and set(first) < all_blocks
    assert a.store.pending_count(FOLDER) == 1
    with _owner(hub_url) as conn:
        stored = {r[0] for r in conn.execute("SELECT sha256 FROM shoal.blocks")}
        assert conn.execute("SELECT count(*) FROM shoal.changes").fetchone()[0] == 0
    assert stored == set(first)

    sent: list[str] = []

    def recording_put_blocks(self, blocks):
        sent.extend(s for s, _ in blocks)
        return real_put_blocks(self, blocks)

    monkeypatch.setattr(Hub, "put_blocks", recording_put_blocks)
    a.sync()
    assert not set(sent) & stored, "blocks already on the hub were sent again"
    assert set(sent) == all_blocks - stored
    b.sync()
    assert b.read("big.bin") == big
    assert_converged([a, b])


@both_ways
def test_every_replaced_version_is_kept_in_the_trash(devices):
    """Remote changes replacing one path several times within one second each keep the version
    they replace (the trash name has a one-second stamp: two of them must not collide)."""
    a, b = devices("alpha"), devices("beta")
    pinned = time.time()
    b.engine.clock = lambda: pinned  # every apply on beta happens "in the same second"
    versions = [b"version one", b"version two, longer", b"version three, longer still"]
    for v in versions:
        a.write("doc.txt", v)
        a.sync()
        b.sync()
        assert b.read("doc.txt") == v
    (a.root / "doc.txt").unlink()
    a.sync()
    b.sync()
    assert not (b.root / "doc.txt").exists()
    trashed = _trash_contents(b)
    missing = [v for v in versions if v not in trashed]
    assert not missing, f"replaced versions lost from beta's trash: {missing} (trash holds {b.trash()})"


# -- the hub restarted ----------------------------------------------------------------------------------


def test_hub_restarted_between_cycles(tmp_path, encryption):
    """The hub's server stops and starts again: an edit waits in the outbox and arrives once.
    (Plain only in the suite: its sealed run is test_daemon_e2e's hub-down test, with daemons.)"""
    from tests.fixtures.hubs import TestHub
    from tests.pgserver import TcpPostgres

    server = TcpPostgres(tmp_path / "server")
    try:
        hub = TestHub(server.test_server(), "hub", tmp_path / "logins").create()
        hub.init()
        url = hub.owner_url  # the owner, for looking at the hub's tables
        quick = {"connect_timeout": "3"}
        kw = {"url_params": quick, "passphrase": passphrase_for(encryption)}
        a, b = Device(tmp_path, "alpha", hub, **kw), Device(tmp_path, "beta", hub, **kw)
        try:
            a.write("doc.txt", "before the restart")
            a.write("keep.txt", "unchanged")
            sync_all([a, b], rounds=1)
            assert b.read("doc.txt") == b"before the restart"

            server.stop()
            a.write("doc.txt", "edited while the hub was down")
            with pytest.raises(HubUnreachable):
                a.sync()
            assert a.store.pending_count(FOLDER) == 1  # waits in the outbox
            with pytest.raises(HubUnreachable):
                a.sync()
            assert a.store.pending_count(FOLDER) == 1

            server.start()
            sync_all([a, b])
            assert_converged([a, b])
            assert b.read("doc.txt") == b"edited while the hub was down"
            sealer = _sealer(a)
            hub_path, hub_sha = (sealer.seal_path, sealer.content_id) if sealer else (str, str)
            with _owner(url) as conn:
                rows = conn.execute("SELECT sha256 FROM shoal.changes WHERE path = %s ORDER BY id",
                                    (hub_path("doc.txt"),)).fetchall()
            assert rows == [(hub_sha(_sha(b"before the restart")),), (hub_sha(_sha(b"edited while the hub was down")),)]
        finally:
            a.close()
            b.close()
    finally:
        server.cleanup()


# -- policies and modes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("newer,encryption", [("alpha", "plain"), ("beta", "plain"), ("beta", "sealed")])
def test_newest_wins_trashes_the_older_version_without_a_conflict_copy(devices, newer):
    a = devices("alpha", conflict="newest-wins")
    b = devices("beta", conflict="newest-wins")
    a.write("doc.txt", "base")
    sync_all([a, b], rounds=1)
    now = time.time()
    older, newest = (now - 1000, now - 500)
    a.write("doc.txt", "alpha edit", mtime=newest if newer == "alpha" else older)
    b.write("doc.txt", "beta edit", mtime=newest if newer == "beta" else older)
    a.sync()  # alpha's edit reaches the hub first; beta's is concurrent
    b.sync()
    sync_all([a, b])
    heads = assert_converged([a, b])
    assert list(heads) == ["doc.txt"], "newest-wins must not make a conflict copy"
    winner, loser = (a, b) if newer == "alpha" else (b, a)
    assert a.read("doc.txt") == f"{winner.name} edit".encode()
    # The older version is in the trash of the device that held it.
    assert f"{loser.name} edit".encode() in _trash_contents(loser)


def test_send_only_and_receive_only(devices):
    s = devices("sender", mode="send-only")
    r = devices("receiver", mode="receive-only")
    n = devices("normal")
    s.write("from-sender.txt", "s1")
    n.write("from-normal.txt", "n1")
    r.write("from-receiver.txt", "r1")
    sync_all([s, n, r])

    # send-only pushes, but does not apply others' changes
    assert n.read("from-sender.txt") == b"s1" and r.read("from-sender.txt") == b"s1"
    assert not (s.root / "from-normal.txt").exists()
    # receive-only applies, but its own edits stay local
    assert r.read("from-normal.txt") == b"n1"
    assert r.read("from-receiver.txt") == b"r1"
    assert not (n.root / "from-receiver.txt").exists() and not (s.root / "from-receiver.txt").exists()

    n.write("from-sender.txt", "edited on normal")
    r.write("from-normal.txt", "edited on receiver")
    sync_all([n, s, r])
    assert s.read("from-sender.txt") == b"s1", "a send-only folder applied a remote change"
    assert n.read("from-normal.txt") == b"n1", "a receive-only folder pushed a local edit"
    heads = {h.path: h.sha256 for h in n.heads() if not h.deleted}  # (opened, if sealed)
    assert heads == {"from-sender.txt": _sha(b"edited on normal"), "from-normal.txt": _sha(b"n1")}
    assert s.store.pending_count(FOLDER) == 0 and r.store.pending_count(FOLDER) == 0


# -- hub identity ---------------------------------------------------------------------------------------


@both_ways  # sealed: the folder's key goes to the new hub too (an engine once kept the old hub's)
def test_new_hub_identity_deletes_nothing_and_the_new_hub_gets_everything(make_hub, devices):
    a, b = devices("alpha"), devices("beta")
    a.write("a1.txt", "from alpha")
    a.write("dir/a2.txt", "more from alpha")
    b.write("b1.txt", "from beta")
    sync_all([a, b])
    assert_converged([a, b])
    (a.root / "a1.txt").unlink()  # one deletion already on the old hub, applied on beta
    sync_all([a, b])
    before_a, before_b = a.files(), b.files()

    new_hub = make_hub()  # another database, made a hub by `shoal hub init`; dropped after the test
    try:
        b.write("b-offline.txt", "written while switching hubs")
        for d in (a, b):
            d.use_hub(new_hub)  # the engine connects through d.hub(): same state, another hub (and login)
        reports = [a.sync(), b.sync()]
        assert all(r.hub_reset for r in reports)
        assert before_a.items() <= a.files().items(), "a local file was deleted after the hub changed"
        assert before_b.items() <= b.files().items()
        sync_all([a, b])
        heads = assert_converged([a, b])
        assert set(heads) == {"dir/a2.txt", "b1.txt", "b-offline.txt"}
    finally:
        for d in (a, b):
            d.close()


# -- safety rails through the engine ------------------------------------------------------------------


def test_mass_delete_pauses_the_folder_until_confirmed(devices):
    a, b = devices("alpha"), devices("beta")
    for i in range(20):
        a.write(f"f{i:02}.txt", f"file {i}")
    sync_all([a, b])
    assert len(b.files()) == 20
    for i in range(15):
        (a.root / f"f{i:02}.txt").unlink()
    report = a.sync()
    assert report.folders[0].paused and report.folders[0].paused.startswith("mass-delete")
    assert not report.ok
    b.sync()
    assert len(b.files()) == 20, "a mass delete went through without confirmation"
    assert a.sync().folders[0].paused  # stays paused until confirmed
    b.sync()
    assert len(b.files()) == 20
    assert a.sync(allow_mass_delete=True).ok
    # The receiving device guards the pulled deletions too (issue 9, item 10): its user confirms.
    assert b.sync().folders[0].paused.startswith("mass-delete")
    assert len(b.files()) == 20
    assert b.sync(allow_mass_delete=True).ok
    assert sorted(b.files()) == [f"f{i:02}.txt" for i in range(15, 20)]
    assert_converged([a, b])


def test_missing_marker_pauses_and_deletes_nothing(devices):
    a, b = devices("alpha"), devices("beta")
    for i in range(5):
        a.write(f"f{i}.txt", f"file {i}")
    sync_all([a, b])
    # The marker is gone and so are a few files (too few for the mass-delete guard).
    (a.root / ".shoal" / "folder-id").unlink()
    for i in range(3):
        (a.root / f"f{i}.txt").unlink()
    report = a.sync()
    assert report.folders[0].paused and "marker" in report.folders[0].paused
    b.sync()
    assert len(b.files()) == 5, "a folder without its marker sent deletions"
    assert not any(h.deleted for h in b.heads())
    assert a.sync().folders[0].paused
    assert not (a.root / ".shoal" / "folder-id").exists(), "the marker was silently recreated"


# -- random schedules ----------------------------------------------------------------------------------

PATHS = ["a.txt", "b.txt", "d/c.txt", "d/e.txt", "d/g/h.txt", "f.bin"]
NAMES = ["alpha", "beta", "gamma"]

ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 2), st.integers(0, len(PATHS) - 1), st.integers(0, 7)),
        st.tuples(st.just("delete"), st.integers(0, 2), st.integers(0, len(PATHS) - 1)),
        st.tuples(st.just("rename"), st.integers(0, 2), st.integers(0, len(PATHS) - 1),
                  st.integers(0, len(PATHS) - 1)),
        st.tuples(st.just("sync"), st.integers(0, 2)),
    ),
    min_size=1, max_size=25,
)


def _everywhere(ds: list[Device]) -> set[str]:
    return {sha for d in ds for sha in d.files().values()}


def _check_nothing_lost(ds: list[Device], protected: set[str]) -> None:
    kept = _everywhere(ds) | {s for d in ds for s in _trash_shas(d)}
    lost = protected - kept
    assert not lost, f"versions lost: {sorted(x[:12] for x in lost)}"


#: One path replaced on beta by three remote versions in quick succession.
QUICK_SUCCESSION = [("write", 0, 0, 1), ("sync", 0), ("sync", 1), ("write", 0, 0, 2), ("sync", 0), ("sync", 1),
                    ("write", 0, 0, 3), ("sync", 0), ("sync", 1)]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(schedule=QUICK_SUCCESSION, conflict="keep-both")
@given(schedule=ops, conflict=st.sampled_from(["keep-both", "newest-wins"]))
def test_random_schedules_converge_without_losing_a_version(pg_dsn, schedule, conflict):
    """A version is protected once it was on a device's disk when that device synced. It may
    leave every disk only by a user's own delete or overwrite; otherwise it must stay at some
    path or in some trash, and after everyone synced, at a path on every device or in a trash."""
    _random_schedule(pg_dsn, schedule, conflict, None)


@pytest.mark.slow
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(schedule=QUICK_SUCCESSION, conflict="keep-both")
@given(schedule=ops, conflict=st.sampled_from(["keep-both", "newest-wins"]))
def test_random_schedules_converge_without_losing_a_version_sealed(pg_dsn, schedule, conflict):
    """The same with encrypted folders: fewer examples (each also unwraps three folder keys)."""
    _random_schedule(pg_dsn, schedule, conflict, TEST_PASSPHRASE)


def _random_schedule(pg_dsn, schedule, conflict, passphrase: str | None) -> None:
    name = "prop_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(pg_dsn, dbname=name)
    base = Path(tempfile.mkdtemp(prefix="shoal-prop-"))
    ds: list[Device] = []
    try:
        c = connect(url)
        hub_init(c)
        c.close()
        # The owner's login on purpose: this is about convergence, and a login per device per
        # example (`shoal hub add-device` x 3 x 15) would cost half a minute.
        ds = [Device(base, n, url, owner=True, conflict=conflict, passphrase=passphrase) for n in NAMES]
        protected: set[str] = set()
        for op in schedule:
            kind, d = op[0], ds[op[1]]
            if kind == "sync":
                protected |= set(d.files().values())
                d.sync()
                _check_nothing_lost(ds, protected)
                continue
            before = _everywhere(ds)
            if kind == "write":
                d.write(PATHS[op[2]], f"content {op[3]}\n".encode() * (op[3] + 1))
            elif kind == "delete":
                (d.root / PATHS[op[2]]).unlink(missing_ok=True)
            elif kind == "rename":
                src, dst = d.root / PATHS[op[2]], d.root / PATHS[op[3]]
                if src.exists() and src != dst:
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(src, dst)
            # The user's own delete or overwrite may drop the last copy of a version.
            protected -= before - _everywhere(ds)
        for d in ds:
            protected |= set(d.files().values())
        sync_all(ds, rounds=3)
        heads = assert_converged(ds)
        trashed = {s for d in ds for s in _trash_shas(d)}
        lost = {s for s in protected if s not in set(heads.values()) and s not in trashed}
        assert not lost, f"versions lost: {sorted(x[:12] for x in lost)}"
    finally:
        for d in ds:
            d.close()
        shutil.rmtree(base, ignore_errors=True)
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- a row the hub refuses (issue 9, item 9) -----------------------------------------------------------


def _long_path() -> str:
    """A valid path of about 3.4 KB: deep directories with long names, each under 255 bytes."""
    # Names that do not compress (PostgreSQL compresses a long index entry before it gives up).
    parts = [f"{i:02}-" + "".join(_sha(f"{i}.{j}".encode()) for j in range(4))[:236] for i in range(14)]
    path = "/".join(parts) + "/long-file.txt"
    assert 3300 < len(path.encode()) < 3500
    return path


@both_ways
def test_a_long_path_never_blocks_the_folder(tmp_path, hub_url, make_device, encryption):
    """`shoal sync --now` pushes the normal files and reports the long one (or syncs it, on a hub
    whose index holds it); another device gets every normal file either way. (Sealed, the hub
    sees a sealed path a third longer: over its 4096 bytes, refused.)"""
    import json

    import yaml

    from tests.daemons import shoal

    docs = tmp_path / "alpha-docs"
    cfg = tmp_path / "alpha.yaml"
    folder = {"id": "docs", "path": str(docs)}
    if encryption == "sealed":
        (tmp_path / "alpha-passphrase").write_text(TEST_PASSPHRASE + "\n")
        (tmp_path / "alpha-passphrase").chmod(0o600)
        folder["encryption"] = {"passphrase_file": str(tmp_path / "alpha-passphrase")}
    cfg.write_text(yaml.safe_dump({
        "device": {"name": "alpha"}, "state_dir": str(tmp_path / "alpha-state"), "hub": {"url": str(hub_url)},
        "folders": [folder]}))
    long = _long_path()
    (docs / long).parent.mkdir(parents=True)
    (docs / long).write_text("a file deep down")
    normal = {f"n{i}.txt": f"normal {i}" for i in range(5)}
    for p, text in normal.items():
        (docs / p).write_text(text)
    proc = shoal(cfg, "sync", "--now")
    assert "unreachable" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    status = json.loads(shoal(cfg, "status", "--json", check=True).stdout)
    [folder] = status["folders"]
    refused = [e for e in folder["errors"] if e["path"] == long]
    assert refused or encryption == "plain", "a sealed path of 3.4 KB (4.5 KB on the hub) was taken"
    b = make_device("beta", hub_url)
    b.sync()
    got = b.files()
    for p, text in normal.items():
        assert b.read(p) == text.encode()
    if refused:  # this hub cannot hold the path: reported once, not retried, not waiting
        assert refused[0]["kind"] == "refused" and "hub refused" in refused[0]["message"]
        assert long not in got and folder["waiting"] == 0
        proc = shoal(cfg, "sync", "--now")
        assert proc.returncode == 0 and "0 pushed" in proc.stdout, proc.stdout + proc.stderr
        status = json.loads(shoal(cfg, "status", "--json", check=True).stdout)
        [again] = [e for e in status["folders"][0]["errors"] if e["path"] == long]
        assert again["retries"] == refused[0]["retries"], "a refused row was pushed again"
    else:  # the hub holds it: it simply syncs
        assert b.read(long) == b"a file deep down"
    # Changes made after the long path still go through.
    (docs / "after.txt").write_text("later")
    assert shoal(cfg, "sync", "--now").returncode == 0
    b.sync()
    assert b.read("after.txt") == b"later"


POISON_SQL = """
CREATE FUNCTION public.poison_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.path LIKE '%poison%' OR NEW.path = ANY({sealed}) THEN
        RAISE EXCEPTION 'refused by the test: %', NEW.path USING ERRCODE = '{code}';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER poison_rows BEFORE INSERT ON shoal.changes FOR EACH ROW EXECUTE FUNCTION public.poison_rows();
"""


def _poison(url: str, code: str = "54000", sealed_paths: list[str] = ()) -> None:
    """Make the hub refuse rows whose path has "poison" in it, or (sealed) is one of `sealed_paths`."""
    array = "ARRAY[" + ", ".join(f"'{p}'" for p in sealed_paths) + "]::text[]"  # base64url: no quotes
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(POISON_SQL.format(code=code, sealed=array))


def _sealed_paths(d: Device, paths) -> list[str]:
    """The hub's keys of `paths` in d's folder, if it is encrypted (registers it, makes the key)."""
    sealer = _sealer(d)
    return [sealer.seal_path(p) for p in paths] if sealer else []


def _cure(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TRIGGER poison_rows ON shoal.changes")
        conn.execute("DROP FUNCTION public.poison_rows()")


@both_ways
def test_refused_rows_are_found_by_bisecting_and_the_rest_is_pushed(hub_url, devices, monkeypatch):
    import shoal.sync.engine as engine_mod

    monkeypatch.setattr(engine_mod, "PUSH_BATCH", 8)  # several batches, one with two bad rows
    a, b = devices("alpha"), devices("beta")
    names = [f"f{i:02}.txt" for i in range(20)]
    names[5], names[6], names[17] = "d/poison-1.txt", "poison-2.txt", "x/poison-3.txt"
    for n in names:
        a.write(n, f"content of {n}")
    _poison(hub_url, sealed_paths=_sealed_paths(a, [n for n in names if "poison" in n]))
    report = a.sync()
    assert report.ok, report.error
    fr = report.folders[0]
    assert (fr.pushed, fr.refused, fr.waiting) == (17 + 2, 3, 0)  # 17 files and the directories d, x
    errors = {e.path: e for e in a.store.errors(FOLDER)}
    assert {p for p, e in errors.items() if e.kind == "refused"} == {"d/poison-1.txt", "poison-2.txt",
                                                                     "x/poison-3.txt"}
    assert "refused by the test" in errors["poison-2.txt"].message
    b.sync()
    assert sorted(b.files()) == sorted(n for n in names if "poison" not in n)

    # Not retried while the file stays as it is.
    report = a.sync()
    assert (report.folders[0].pushed, report.folders[0].refused) == (0, 0)
    assert a.store.errors(FOLDER) == list(errors.values())

    # The hub takes it now, and the file changes: pushed again, the report cleared.
    _cure(hub_url)
    a.write("poison-2.txt", "edited")
    report = a.sync()
    assert report.folders[0].pushed == 1
    assert {e.path for e in a.store.errors(FOLDER)} == {"d/poison-1.txt", "x/poison-3.txt"}
    b.sync()
    assert b.read("poison-2.txt") == b"edited"


@both_ways
def test_a_refusal_of_the_whole_space_leaves_rows_pending(hub_url, devices):
    """A quota (configuration limit) refuses every row alike: that is not one bad row, so nothing
    is marked refused; the rows wait and go once the hub takes them."""
    a = devices("alpha")
    for i in range(3):
        a.write(f"poison-{i}.txt", str(i))
    _poison(hub_url, "53400", sealed_paths=_sealed_paths(a, [f"poison-{i}.txt" for i in range(3)]))
    with pytest.raises(HubError):
        a.sync()
    assert a.store.pending_count(FOLDER) == 3
    assert not [e for e in a.store.errors(FOLDER) if e.kind == "refused"]
    _cure(hub_url)
    assert a.sync().folders[0].pushed == 3
