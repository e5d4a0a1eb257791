"""The hub's protocol against a real PostgreSQL: idempotent pushes, content checks, a pull cursor
that never skips a row under concurrent pushers, compare-and-swap on heads, block checks,
device-bound logins, and `hub init` run twice at once."""

from __future__ import annotations

import hashlib
import threading
import uuid

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from shoal.errors import HubError, HubMismatch
from shoal.hub.client import Hub, connect, open_hub
from shoal.hub.schema import hub_init, table_migrations as hub_migrations
from tests.fixtures.server import role_dsn

FOLDER = "docs"
BLOCK = 128 * 1024
MTIME = 1_700_000_000 * 10**9


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _row(seq: int, path: str, data: bytes | None, *, base: int | None = None, **extra) -> dict:
    """A changelog row as a device pushes it; `data=None` makes a deletion."""
    row = {"seq": seq, "path": path, "kind": "file", "size": 0 if data is None else len(data),
           "mtime_ns": MTIME, "sha256": _sha(data or b""), "target": None, "deleted": data is None,
           "base": base, "moved_from": None, "conflict_of": None}
    row.update(extra)
    return row


def _device(url: str, name: str) -> Hub:
    hub = open_hub(url, None, str(uuid.uuid4()), str(uuid.uuid4()))
    hub.register(name)
    return hub


def _owner(url: str) -> psycopg.Connection:
    """The hub owner's connection, looking at the default space (row level security is forced,
    so an owner that is not a superuser sees a space's rows only with it set)."""
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("SELECT set_config('shoal.space', 'default', false)")
    return conn


def _count(url: str, query: str, *args) -> int:
    with _owner(url) as conn:
        return conn.execute(query, args).fetchone()[0]


@pytest.fixture
def hubs(hub_url):
    """Open device hubs, closed after the test."""
    opened: list[Hub] = []

    def make(name: str) -> Hub:
        hub = _device(hub_url, name)
        opened.append(hub)
        return hub

    yield make
    for hub in opened:
        hub.close()


# -- idempotent push --------------------------------------------------------------------------


def test_push_replay_is_a_noop_and_a_changed_replay_is_refused(hub_url, hubs):
    a = hubs("alpha")
    data = b"first version"
    a.put_small_contents([(_sha(data), data)], BLOCK)
    rows = [_row(1, "a.txt", data), _row(2, "b.txt", data)]
    first = a.push(FOLDER, rows)
    assert [r.status for r in first] == ["accepted", "accepted"]
    changes = _count(hub_url, "SELECT count(*) FROM shoal.changes")
    assert changes == 2

    # The same rows again (a push whose answer was lost): no-op, same versions.
    again = a.push(FOLDER, rows)
    assert {r.seq: r.version for r in again} == {r.seq: r.version for r in first}
    assert all(r.status == "accepted" for r in again)
    assert _count(hub_url, "SELECT count(*) FROM shoal.changes") == changes

    # The same seq with another payload: refused, and nothing of the batch is written
    # (not even the new seq 3 that came with it).
    other = b"another content"
    a.put_small_contents([(_sha(other), other)], BLOCK)
    heads_before = [(h.path, h.version, h.sha256) for h in a.heads(FOLDER)]
    with pytest.raises(HubMismatch):
        a.push(FOLDER, [_row(1, "a.txt", other), _row(3, "c.txt", other)])
    with pytest.raises(HubMismatch):  # same seq, another path
        a.push(FOLDER, [_row(2, "elsewhere.txt", data)])
    assert _count(hub_url, "SELECT count(*) FROM shoal.changes") == changes
    assert [(h.path, h.version, h.sha256) for h in a.heads(FOLDER)] == heads_before
    assert [c.path for c in a.pull(FOLDER, 0)] == ["a.txt", "b.txt"]

    # Another incarnation of the same device may reuse seq numbers (a store restored afresh).
    reborn = Hub(a.conn, a.device_id, str(uuid.uuid4()))
    assert [r.status for r in reborn.push(FOLDER, [_row(1, "c.txt", other)])] == ["accepted"]
    assert _count(hub_url, "SELECT count(*) FROM shoal.changes") == changes + 1


def test_push_of_content_not_on_the_hub_is_refused_and_nothing_is_visible(hub_url, hubs):
    a, b = hubs("alpha"), hubs("beta")
    there = b"uploaded"
    a.put_small_contents([(_sha(there), there)], BLOCK)
    # One row of the batch names content the hub lacks: the whole batch is refused.
    with pytest.raises(HubError):
        a.push(FOLDER, [_row(1, "ok.txt", there), _row(2, "missing.txt", b"never uploaded")])
    # Blocks uploaded but the content never declared is not enough either.
    half = b"blocks only"
    a.put_blocks([(_sha(half), half)])
    with pytest.raises(HubError):
        a.push(FOLDER, [_row(3, "half.txt", half)])
    assert b.pull(FOLDER, 0) == []
    assert a.heads(FOLDER) == []
    assert _count(hub_url, "SELECT count(*) FROM shoal.changes") == 0
    assert _count(hub_url, "SELECT count(*) FROM shoal.heads") == 0
    # Deletions and symlinks carry no content: no content check for them.
    link = _row(4, "link", None, kind="symlink", deleted=False, size=3, target="a/b", sha256=_sha(b"a/b"))
    assert [r.status for r in a.push(FOLDER, [link])] == ["accepted"]


# -- the pull cursor under concurrent pushers ----------------------------------------------------


def test_concurrent_pushers_never_make_a_puller_skip_a_row(hub_url):
    pushers, per_pusher = 4, 300
    data = b"shared content"
    setup = _device(hub_url, "setup")
    setup.put_small_contents([(_sha(data), data)], BLOCK)
    setup.close()
    hubs = [_device(hub_url, f"pusher{i}") for i in range(pushers)]
    puller = _device(hub_url, "puller")
    pushed: list[list[int]] = [[] for _ in range(pushers)]
    errors: list[BaseException] = []
    start = threading.Barrier(pushers + 1)
    done = threading.Event()

    def push(i: int) -> None:
        try:
            start.wait()
            versions: dict[str, int] = {}
            for n in range(per_pusher):
                # Every third row deletes the file added just before, so both kinds are in flight.
                if n % 3 == 2:
                    path = f"p{i}/f{n - 1}.txt"
                    row = _row(n + 1, path, None, base=versions[path])
                else:
                    path = f"p{i}/f{n}.txt"
                    row = _row(n + 1, path, data)
                (r,) = hubs[i].push(FOLDER, [row])
                assert r.status == "accepted", r
                versions[path] = r.version
                pushed[i].append(r.version)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    seen: list[int] = []

    def pull() -> None:
        cursor = 0
        start.wait()
        try:
            while True:
                finished = done.is_set()  # read before the page: the last pages run after every commit
                page = puller.pull(FOLDER, cursor, 100)
                seen.extend(c.version for c in page)
                if page:
                    cursor = page[-1].version
                elif finished:
                    return
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(pushers)]
    reader = threading.Thread(target=pull)
    for t in threads + [reader]:
        t.start()
    for t in threads:
        t.join(120)
    done.set()
    reader.join(120)
    for h in hubs + [puller]:
        h.close()
    assert not errors, errors
    all_pushed = sorted(v for vs in pushed for v in vs)
    assert len(all_pushed) == pushers * per_pusher
    assert all(a < b for a, b in zip(seen, seen[1:])), "the puller saw rows out of order or twice"
    assert len(seen) == len(set(seen))
    assert seen == all_pushed, f"the puller missed {len(set(all_pushed) - set(seen))} rows"
    with _owner(hub_url) as conn:
        in_db = [r[0] for r in conn.execute(
            "SELECT id FROM shoal.changes WHERE folder_id = %s ORDER BY id", (FOLDER,))]
    assert seen == in_db


# -- compare-and-swap on heads -------------------------------------------------------------------


def test_compare_and_swap_on_heads(hub_url, hubs):
    a, b = hubs("alpha"), hubs("beta")
    one, two, three = b"one", b"two", b"three"
    a.put_small_contents([(_sha(x), x) for x in (one, two, three)], BLOCK)

    (r1,) = a.push(FOLDER, [_row(1, "doc.txt", one)])
    assert r1.status == "accepted" and r1.head is None

    # b creates the same path without having seen a's version: concurrent.
    (c,) = b.push(FOLDER, [_row(1, "doc.txt", two)])
    assert c.status == "conflict" and c.version == r1.version
    assert c.head.version == r1.version and c.head.sha256 == _sha(one)
    assert c.head.device_id == a.device_id and c.head.device_name == "alpha"
    assert c.head.deleted is False

    # Based on the head: accepted.
    (r2,) = b.push(FOLDER, [_row(2, "doc.txt", two, base=r1.version)])
    assert r2.status == "accepted" and r2.version > r1.version

    # a's edit still based on its own old version: stale, conflict with b's head.
    (c2,) = a.push(FOLDER, [_row(2, "doc.txt", three, base=r1.version)])
    assert c2.status == "conflict" and c2.head.version == r2.version and c2.head.sha256 == _sha(two)
    # a stale deletion is concurrent too
    (c3,) = a.push(FOLDER, [_row(3, "doc.txt", None, base=r1.version)])
    assert c3.status == "conflict" and c3.head.version == r2.version

    # The same content as the head, whatever the base: not a conflict.
    (s,) = a.push(FOLDER, [_row(4, "doc.txt", two, base=r1.version)])
    assert s.status == "same" and s.version == r2.version
    # Deleting a path that never existed: nothing to do.
    (d,) = a.push(FOLDER, [_row(5, "never.txt", None)])
    assert d.status == "same" and d.version is None

    heads = {h.path: h for h in a.heads(FOLDER)}
    assert list(heads) == ["doc.txt"]
    assert heads["doc.txt"].version == r2.version and heads["doc.txt"].sha256 == _sha(two)
    # Only the accepted rows are in the changelog; the conflicts are recorded.
    assert _count(hub_url, "SELECT count(*) FROM shoal.changes") == 2
    assert _count(hub_url, "SELECT count(*) FROM shoal.conflicts WHERE path = 'doc.txt'") == 3


# -- blocks ----------------------------------------------------------------------------------------


def test_corrupt_block_is_refused_and_nothing_is_stored(hub_url, hubs):
    a = hubs("alpha")
    good = b"g" * 1000
    bad = b"these bytes are not the block"
    claimed = _sha(b"the real block")
    with pytest.raises(HubError):
        a.put_blocks([(_sha(good), good), (claimed, bad)])
    assert a.missing_blocks([_sha(good), claimed]) == {_sha(good), claimed}
    with pytest.raises(HubError):
        a.put_small_contents([(_sha(good), good), (claimed, bad)], BLOCK)
    assert a.missing_contents([_sha(good), claimed]) == {_sha(good), claimed}
    # A content cannot be declared over blocks the hub does not have.
    with pytest.raises(HubError):
        a.put_content(_sha(bad), len(bad), BLOCK, [claimed])
    assert _count(hub_url, "SELECT count(*) FROM shoal.blocks") == 0
    assert _count(hub_url, "SELECT count(*) FROM shoal.contents") == 0
    # The honest upload goes through.
    assert a.put_blocks([(_sha(good), good)]) == 1
    assert a.get_blocks([_sha(good)]) == {_sha(good): good}


# -- device-bound logins ---------------------------------------------------------------------------


@pytest.fixture
def bound_role(hub_url, pg_dsn):
    role = "shoal_test_" + uuid.uuid4().hex[:10]
    with _owner(hub_url) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN PASSWORD \'pw\' IN ROLE shoal_device')
    yield role
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_a_bound_login_cannot_act_as_another_device(hub_url, hubs, bound_role):
    mine, other = str(uuid.uuid4()), str(uuid.uuid4())
    with _owner(hub_url) as conn:
        conn.execute("INSERT INTO shoal.device_roles(role_name, device_id) VALUES (%s, %s)", (bound_role, mine))
    owner_hub = hubs("owner")
    Hub(owner_hub.conn, other, str(uuid.uuid4())).register("laptop")  # the other device exists
    data = b"bound content"
    owner_hub.put_small_contents([(_sha(data), data)], BLOCK)

    conn = psycopg.connect(role_dsn(hub_url, bound_role, "pw"), autocommit=True)
    try:
        assert conn.execute("SELECT session_user").fetchone()[0] == bound_role
        as_me = Hub(conn, mine, str(uuid.uuid4()))
        as_me.register("phone")
        assert [r.status for r in as_me.push(FOLDER, [_row(1, "mine.txt", data)])] == ["accepted"]

        as_other = Hub(conn, other, str(uuid.uuid4()))
        with pytest.raises(HubError, match="may not act as device"):
            as_other.push(FOLDER, [_row(1, "forged.txt", data)])
        with pytest.raises(HubError, match="may not act as device"):
            as_other.pull(FOLDER, 0)
        with pytest.raises(HubError, match="may not act as device"):
            as_other.heads(FOLDER)
        with pytest.raises(HubError, match="bound to another device"):
            as_other.register("evil")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # and it cannot go around the API
            conn.execute("DELETE FROM shoal.heads")
    finally:
        conn.close()
    with _owner(hub_url) as conn:
        assert conn.execute("SELECT count(*) FROM shoal.changes WHERE device_id = %s", (other,)).fetchone()[0] == 0
        assert conn.execute("SELECT path FROM shoal.heads").fetchall() == [("mine.txt",)]
        assert conn.execute("SELECT name FROM shoal.devices WHERE device_id = %s", (other,)).fetchone() == ("laptop",)
        assert conn.execute("SELECT device_id::text FROM shoal.device_roles WHERE role_name = %s",
                            (bound_role,)).fetchone() == (mine,)


# -- hub init ----------------------------------------------------------------------------------------


def test_hub_init_is_idempotent(hub_dsn):
    conn = connect(hub_dsn)
    try:
        hub_id, applied = hub_init(conn)
        assert applied == [n for n, _, _ in hub_migrations()]
        again_id, again = hub_init(conn)
        assert (again_id, again) == (hub_id, [])
        assert conn.execute("SELECT count(*) FROM shoal.hub_meta WHERE key = 'hub_id'").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM shoal.schema_migrations").fetchone()[0] == len(applied)
    finally:
        conn.close()


def _fresh_db(pg_dsn: str) -> str:
    name = "hubinit_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


@pytest.mark.parametrize("attempt", range(3))
def test_two_concurrent_hub_inits_on_a_fresh_database_both_succeed(pg_dsn, attempt):
    name = _fresh_db(pg_dsn)
    dsn = make_conninfo(pg_dsn, dbname=name)
    try:
        conns = [connect(dsn) for _ in range(2)]
        barrier = threading.Barrier(2)
        results: list = [None, None]

        def run(i: int) -> None:
            try:
                barrier.wait()
                results[i] = hub_init(conns[i])
            except BaseException as e:  # noqa: BLE001
                results[i] = e

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for c in conns:
            c.close()
        assert not [r for r in results if isinstance(r, BaseException)], results
        (id1, applied1), (id2, applied2) = results
        assert id1 == id2
        everything = [n for n, _, _ in hub_migrations()]
        assert sorted(applied1 + applied2) == everything  # each migration applied exactly once
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'shoal'").fetchone()[0] == 1
            assert conn.execute("SELECT count(*) FROM shoal.hub_meta WHERE key = 'hub_id'").fetchone()[0] == 1
            assert [r[0] for r in conn.execute("SELECT version FROM shoal.schema_migrations ORDER BY 1")] == everything
            # and the result is a working hub
        hub = open_hub(dsn, None, str(uuid.uuid4()), str(uuid.uuid4()), init_if_missing=False)
        try:
            assert hub.register("after-init") == id1
        finally:
            hub.close()
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_syncing_device_gets_its_own_rows_back_as_stubs(hubs):
    """What a device pushed comes back in its pulls (the cursor passes over it) but is skipped:
    with stub_own, as the engine pulls, those rows carry no path, hash or payload (across a slow
    link they were most of a first sync's download). Another device's rows come whole."""
    a, b = hubs("alpha"), hubs("beta")
    data = b"mine"
    a.put_small_contents([(_sha(data), data)], BLOCK)
    a.push(FOLDER, [_row(1, "mine.txt", data)])
    b.put_small_contents([(_sha(data), data)], BLOCK)
    b.push(FOLDER, [_row(1, "theirs.txt", data)])
    mine, theirs = a.pull(FOLDER, 0, stub_own=True)
    assert (mine.device_id, mine.seq, mine.path, mine.sha256, mine.device_name) == (a.device_id, 1, None, None, None)
    assert (theirs.path, theirs.sha256, theirs.device_id) == ("theirs.txt", _sha(data), b.device_id)
    assert [c.path for c in a.pull(FOLDER, 0)] == ["mine.txt", "theirs.txt"]  # whole, when asked so
    _, page = a.horizon_and_pull(FOLDER, 0, stub_own=True)
    assert [c.path for c in page] == [None, "theirs.txt"]
