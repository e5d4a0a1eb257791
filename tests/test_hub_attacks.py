"""A stolen phone against the hub (issue 9): every attack is made AS A DEVICE LOGIN (a role made
by `hub_admin.add_device`, connecting with its own password, never the hub owner), and each test
asserts the safe outcome. The owner's connection is used only to look at what was stored.

Spaces: `alice` is the attacker's space, `bob` the victim's (bob has two devices, so one can
fetch what the other uploaded).
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from shoal.core.blocks import MIN_BLOCK, block_ranges, block_size_for
from shoal.errors import FolderKeyProblem, HubError, HubRowRefused, HubUnreachable
from shoal.hub import admin as hub_admin
from shoal.hub.client import Hub
from tests.fixtures.server import role_dsn
from tests.rows import file_row, sha, symlink_row

EMPTY_SHA = hashlib.sha256(b"").hexdigest()
MiB = 1024 * 1024
MAX_BLOCK = 16 * MiB


# -- helpers -----------------------------------------------------------------------------------


class Lab:
    """Device logins made with `add_device` on one hub; the roles made are tracked by what
    add_device returned (names may be opaque) and dropped at the end (roles are server-wide)."""

    def __init__(self, hub_url: str, pg_dsn: str):
        self.hub_url = hub_url
        self.pg_dsn = pg_dsn
        self.tag = uuid.uuid4().hex[:8]
        self.roles: list[str] = []
        self.conns: list[psycopg.Connection] = []
        self.logins: dict[str, tuple[str, str]] = {}  # key -> (role, password)

    def owner(self) -> psycopg.Connection:
        conn = psycopg.connect(self.hub_url, autocommit=True)
        self.conns.append(conn)
        return conn

    def add_login(self, name: str, space: str) -> tuple[str, str]:
        password = hub_admin.new_password()
        with psycopg.connect(self.hub_url, autocommit=True) as admin:
            role, _url = hub_admin.add_device(admin, name, hub_url_for_devices=self.hub_url,
                                              space=space, password=password)
        self.roles.append(role)
        return role, password

    def connect(self, role: str, password: str, *, autocommit: bool = True,
                dbname: str | None = None) -> psycopg.Connection:
        # Over TCP with SCRAM, as a device reaches the hub (the owner alone uses the socket).
        base = make_conninfo(self.hub_url, dbname=dbname) if dbname else self.hub_url
        conn = psycopg.connect(role_dsn(base, role, password), autocommit=autocommit)
        self.conns.append(conn)
        return conn

    def device(self, key: str, space: str, *, name: str | None = None,
               register_as: str | None = None) -> Hub:
        """A device login of `space`, connected with its password and registered."""
        role, password = self.add_login(name or f"{key}-{self.tag}", space)
        self.logins[key] = (role, password)
        hub = Hub(self.connect(role, password), str(uuid.uuid4()), str(uuid.uuid4()), call_timeout=60)
        hub.register(register_as or f"{key}-phone")
        return hub

    def login_conn(self, key: str, *, autocommit: bool = True) -> psycopg.Connection:
        """Another session of the login made for `key`."""
        role, password = self.logins[key]
        return self.connect(role, password, autocommit=autocommit)

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.close()
            except Exception:
                pass
        with psycopg.connect(self.pg_dsn, autocommit=True) as su:
            for role in self.roles:
                su.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                           (role,))
            dbs = [self.hub_url, make_conninfo(self.pg_dsn, dbname="postgres")]
            for dsn in dbs:  # large objects / grants a login may own or hold
                try:
                    with psycopg.connect(dsn, autocommit=True) as c:
                        me = c.execute("SELECT current_user").fetchone()[0]
                        for role in self.roles:
                            if c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                                c.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(
                                    sql.Identifier(role), sql.Identifier(me)))
                                c.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                except psycopg.Error:
                    pass
            for role in self.roles:
                su.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture
def lab(hub_url, pg_dsn):
    lab = Lab(hub_url, pg_dsn)
    yield lab
    lab.close()


@pytest.fixture
def spaces(lab):
    """alice (attacker) in space alice; bob and bob2 (bob's second device) in space bob."""
    return {"alice": lab.device("alice", "alice"), "bob": lab.device("bob", "bob"),
            "bob2": lab.device("bob2", "bob")}


def upload_small(hub: Hub, data: bytes) -> str:
    hub.put_small_contents([(sha(data), data)], MIN_BLOCK)
    return sha(data)


def upload_large(hub: Hub, data: bytes) -> str:
    """As shoal.sync.transfer does for a multi-block file: put_blocks, then put_content."""
    names, blocks = [], []
    for offset, length in block_ranges(len(data)):
        chunk = data[offset:offset + length]
        names.append(sha(chunk))
        blocks.append((sha(chunk), chunk))
    hub.put_blocks(blocks)
    hub.put_content(sha(data), len(data), block_size_for(len(data)), names)
    return sha(data)


def fetch(hub: Hub, content_sha: str) -> bytes:
    """A content's bytes as a device fetches them (get_contents + get_blocks), checked."""
    info = hub.get_contents([content_sha]).get(content_sha)
    assert info is not None, f"content {content_sha} is not on the hub for this device"
    got = hub.get_blocks(info.blocks) if info.blocks else {}
    missing = [b for b in info.blocks if b not in got]
    assert not missing, f"blocks {missing} of content {content_sha} are missing on the hub (poisoned?)"
    data = b"".join(got[b] for b in info.blocks)
    assert len(data) == info.size, f"content {content_sha}: blocks hold {len(data)} bytes, size says {info.size}"
    assert sha(data) == content_sha, f"content {content_sha}: its blocks hash to {sha(data)}"
    return data


def text_columns(owner: psycopg.Connection) -> list[tuple[str, str, bool]]:
    """(table, column, is_array) of every text-like column of the hub's tables."""
    return [(t, c, dt == "ARRAY") for t, c, dt in owner.execute(
        "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c"
        " JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name"
        " WHERE c.table_schema = 'shoal' AND t.table_type = 'BASE TABLE'"
        " AND (c.data_type IN ('text', 'character varying')"
        "      OR (c.data_type = 'ARRAY' AND c.udt_name IN ('_text', '_varchar')))").fetchall()]


def stored_anywhere(owner: psycopg.Connection, value: str) -> list[str]:
    """table.column of every hub table cell that holds `value` (or an array holding it)."""
    hits = []
    for table, col, is_array in text_columns(owner):
        cond = "%s = ANY({c})" if is_array else "{c} = %s"
        q = sql.SQL("SELECT count(*) FROM shoal.{t} WHERE " + cond).format(
            t=sql.Identifier(table), c=sql.Identifier(col))
        if owner.execute(q, (value,)).fetchone()[0]:
            hits.append(f"{table}.{col}")
    return hits


def longest_text(owner: psycopg.Connection) -> dict[str, int]:
    """table.column -> the longest value (bytes) stored in it, over every text column."""
    out = {}
    for table, col, is_array in text_columns(owner):
        expr = "octet_length(array_to_string({c}, ''))" if is_array else "octet_length({c})"
        q = sql.SQL("SELECT coalesce(max(" + expr + "), 0) FROM shoal.{t}").format(
            t=sql.Identifier(table), c=sql.Identifier(col))
        out[f"{table}.{col}"] = owner.execute(q).fetchone()[0]
    return out


def _end(conn: psycopg.Connection) -> None:
    """Roll back and close: the locks are gone when this returns (a bare close does not wait)."""
    try:
        conn.rollback()
    except psycopg.Error:
        pass
    conn.close()


# -- items 2 and 3: advisory locks -------------------------------------------------------------

ADVISORY_LOCK_CALLS = [
    "pg_advisory_lock(%s::bigint)", "pg_advisory_lock(%s::int, %s::int)",
    "pg_try_advisory_lock(%s::bigint)", "pg_try_advisory_lock(%s::int, %s::int)",
    "pg_advisory_lock_shared(%s::bigint)", "pg_advisory_lock_shared(%s::int, %s::int)",
    "pg_try_advisory_lock_shared(%s::bigint)", "pg_try_advisory_lock_shared(%s::int, %s::int)",
    "pg_advisory_xact_lock(%s::bigint)", "pg_advisory_xact_lock(%s::int, %s::int)",
    "pg_try_advisory_xact_lock(%s::bigint)", "pg_try_advisory_xact_lock(%s::int, %s::int)",
    "pg_advisory_xact_lock_shared(%s::bigint)", "pg_advisory_xact_lock_shared(%s::int, %s::int)",
    "pg_try_advisory_xact_lock_shared(%s::bigint)", "pg_try_advisory_xact_lock_shared(%s::int, %s::int)",
]


@pytest.mark.parametrize("call", ADVISORY_LOCK_CALLS)
def test_a_device_login_cannot_take_advisory_locks(lab, spaces, call):
    conn = lab.login_conn("alice")
    args = (1, 2) if "int, " in call else (0x73686F616C,)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        with conn.transaction():
            conn.execute("SELECT " + call, args)


def test_an_open_transaction_of_another_space_does_not_block_a_push(lab, spaces):
    """Alice holds a transaction open after doing whatever her login may (lock guesses, a push
    of the same folder id in her own space); bob's push of that folder id still goes through."""
    alice_tx = lab.login_conn("alice", autocommit=False)
    alice = Hub(alice_tx, spaces["alice"].device_id, spaces["alice"].incarnation_id, call_timeout=60)
    bob = spaces["bob"]
    data_a, data_b = b"alice's docs", b"bob's docs"
    upload_small(spaces["alice"], data_a)
    upload_small(bob, data_b)
    guesses = ["shoal.folder:bob/docs", "shoal.folder:docs", "bob/docs", "docs"]
    t = None
    try:
        alice_tx.execute("SELECT 1")  # the transaction she holds open (below: savepoints in it)
        for key in guesses:
            for call in ("pg_advisory_lock(hashtextextended(%s, 0))",
                         "pg_advisory_xact_lock(hashtextextended(%s, 0))"):
                try:
                    with alice_tx.transaction():  # a savepoint: a refusal keeps the transaction open
                        alice_tx.execute("SELECT " + call, (key,))
                except psycopg.errors.InsufficientPrivilege:
                    pass
        alice.push("docs", [file_row(1, "a.txt", data_a)])  # in her open transaction
        done: dict = {}

        def bob_push():
            try:
                done["result"] = [r.status for r in bob.push("docs", [file_row(1, "b.txt", data_b)])]
            except BaseException as e:  # noqa: BLE001 - reported below
                done["error"] = e

        t = threading.Thread(target=bob_push, daemon=True)
        t.start()
        t.join(5.0)
        assert not t.is_alive(), ("bob's push of folder 'docs' is blocked by an open transaction of "
                                  "space alice's login (advisory lock on a guessable key)")
        assert done.get("result") == ["accepted"], done
    finally:
        _end(alice_tx)  # releases whatever she held, so a blocked push ends
        if t is not None:
            t.join(30)


# -- item 4: content poisoning -----------------------------------------------------------------

BOGUS = ["her_block_same_size", "her_block_wrong_size", "blocks_she_lacks"]


def _declare_bogus(alice: Hub, content_sha: str, size: int, how: str) -> None:
    """Alice (another space) declares bob's content first, with a block list of hers."""
    mine = os.urandom(max(size, 1))
    alice.put_blocks([(sha(mine), mine)])
    try:
        if how == "her_block_same_size":
            alice.put_content(content_sha, len(mine), block_size_for(len(mine)), [sha(mine)])
        elif how == "her_block_wrong_size":
            alice.put_content(content_sha, len(mine) + 1, block_size_for(len(mine)), [sha(mine)])
        else:
            alice.put_content(content_sha, size, MIN_BLOCK, [content_sha])
    except HubError:
        pass  # refused: fine


@pytest.mark.parametrize("how", BOGUS)
@pytest.mark.parametrize("shape", ["small", "multi_block"])
def test_another_space_cannot_poison_a_content(lab, spaces, shape, how):
    alice, bob, bob2 = spaces["alice"], spaces["bob"], spaces["bob2"]
    data = os.urandom(1000) if shape == "small" else os.urandom(2 * MIN_BLOCK + 777)
    content_sha = sha(data)
    _declare_bogus(alice, content_sha, len(data), how)
    assert bob.missing_contents([content_sha]) == {content_sha}
    if shape == "small":
        upload_small(bob, data)
    else:
        upload_large(bob, data)
    assert [r.status for r in bob.push("photos", [file_row(1, "p.jpg", data)])] == ["accepted"]
    [change] = bob2.pull("photos", 0)
    assert change.sha256 == content_sha
    assert fetch(bob2, content_sha) == data


@pytest.mark.parametrize("how", ["her_block_same_size", "her_block_wrong_size"])
def test_another_space_cannot_break_empty_files(lab, spaces, how):
    alice, bob, bob2 = spaces["alice"], spaces["bob"], spaces["bob2"]
    _declare_bogus(alice, EMPTY_SHA, 0, how)
    bob.put_content(EMPTY_SHA, 0, MIN_BLOCK, [])  # as shoal.sync.transfer uploads an empty file
    assert [r.status for r in bob.push("docs", [file_row(1, "empty.txt", b"")])] == ["accepted"]
    info = bob2.get_contents([EMPTY_SHA]).get(EMPTY_SHA)
    assert info is not None and (info.size, info.blocks) == (0, []), info
    assert fetch(bob2, EMPTY_SHA) == b""


def test_a_content_whose_sizes_do_not_add_up_is_refused(lab, spaces):
    alice = spaces["alice"]
    block = os.urandom(5000)
    alice.put_blocks([(sha(block), block)])
    with pytest.raises(HubError):
        alice.put_content(sha(block), len(block) + 1, MIN_BLOCK, [sha(block)])
    with pytest.raises(HubError):
        alice.put_content(sha(block + block), 2 * len(block) - 1, MIN_BLOCK, [sha(block), sha(block)])


# -- item 5: every hash is 64 lowercase hex characters -----------------------------------------

PAYLOAD = b"a harmless block"
BAD_HASHES = {
    "dotdot_path": "../../etc/x",
    "uppercase": sha(PAYLOAD).upper(),
    "63_chars": sha(PAYLOAD)[:63],
    "65_chars": sha(PAYLOAD) + "0",
    "non_hex": "g" * 64,
}
HASH_SITES = ["push_file", "push_symlink", "push_deleted", "put_blocks", "put_small_contents",
              "put_content_sha", "put_content_block_list"]


def _use_bad_hash(hub: Hub, site: str, bad: str) -> None:
    if site == "push_file":
        try:  # make the "content" exist first, the way the rogue device did
            hub.put_blocks([(sha(PAYLOAD), PAYLOAD)])
            hub.put_content(bad, len(PAYLOAD), MIN_BLOCK, [sha(PAYLOAD)])
        except HubError:
            pass
        hub.push("docs", [file_row(1, "f.txt", PAYLOAD, sha256=bad)])
    elif site == "push_symlink":
        hub.push("docs", [symlink_row(1, "l", "target", sha256=bad)])
    elif site == "push_deleted":
        hub.push("docs", [file_row(1, "gone.txt", PAYLOAD, sha256=bad, deleted=True)])
    elif site == "put_blocks":
        hub.put_blocks([(bad, PAYLOAD)])
    elif site == "put_small_contents":
        hub.put_small_contents([(bad, PAYLOAD)], MIN_BLOCK)
    elif site == "put_content_sha":
        hub.put_blocks([(sha(PAYLOAD), PAYLOAD)])
        hub.put_content(bad, len(PAYLOAD), MIN_BLOCK, [sha(PAYLOAD)])
    elif site == "put_content_block_list":
        hub.put_blocks([(sha(PAYLOAD), PAYLOAD)])
        hub.put_content(sha(PAYLOAD), len(PAYLOAD), MIN_BLOCK, [bad])
    else:
        raise AssertionError(site)


@pytest.mark.parametrize("site", HASH_SITES)
@pytest.mark.parametrize("which", list(BAD_HASHES))
def test_the_hub_accepts_only_lowercase_hex_hashes(lab, spaces, site, which):
    bad = BAD_HASHES[which]
    with pytest.raises(HubError) as err:
        _use_bad_hash(spaces["alice"], site, bad)
    assert not isinstance(err.value, HubUnreachable), err.value
    assert stored_anywhere(lab.owner(), bad) == []


# -- item 6: NOTIFY per space ------------------------------------------------------------------


def own_channel(hub: Hub) -> str:
    """The channel a device LISTENs on, found the way the daemon finds it: the hub API's answer
    for this device (a Hub method, or a shoal.*channel*(device) function), else the client's
    hub-wide constant (today's daemon/loop.py)."""
    for attr in ("listen_channel", "notify_channel", "channel"):
        method = getattr(hub, attr, None)
        if callable(method):
            return method()
    fns = [r[0] for r in hub.conn.execute(
        "SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'shoal'::regnamespace"
        " AND p.proname LIKE '%%channel%%' AND p.pronargs = 1").fetchall()]
    if fns:
        return hub.conn.execute(sql.SQL("SELECT shoal.{}(%s)").format(sql.Identifier(fns[0])),
                                (hub.device_id,)).fetchone()[0]
    from shoal.hub import client

    return getattr(client, "NOTIFY_CHANNEL", "shoal_changes")


def _guessable_channels(lab: Lab, alice: Hub) -> set[str]:
    names = {"shoal_changes", own_channel(alice)}
    for space in ("bob", "default"):
        names |= {f"shoal_changes_{space}", f"shoal_{space}", f"shoal_changes:{space}",
                  f"shoal_changes.{space}", f"shoal.{space}", f"shoal:{space}", space}
    return names


def _listen(conn: psycopg.Connection, channels) -> None:
    for ch in channels:
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(ch)))


def test_a_push_notifies_only_its_own_space(lab, spaces):
    alice, bob = spaces["alice"], spaces["bob"]
    alice_ear = lab.login_conn("alice")
    _listen(alice_ear, _guessable_channels(lab, alice))
    bob_channel = own_channel(bob)
    bob_ear = lab.login_conn("bob")
    _listen(bob_ear, [bob_channel])
    data = b"bob pushes"
    upload_small(bob, data)
    bob.push("docs", [file_row(1, "x.txt", data)])
    heard_by_bob = list(bob_ear.notifies(timeout=3.0, stop_after=1))
    heard_by_alice = list(alice_ear.notifies(timeout=1.0))
    assert heard_by_alice == [], (
        f"space alice heard bob's push on {[n.channel for n in heard_by_alice]}: notifications must be per space")
    assert bob_channel != "shoal_changes", (
        "bob's device listens on the hub-wide channel 'shoal_changes': the hub needs a per-space "
        "channel (e.g. an API function shoal.listen_channel(device)) that other spaces cannot name")
    assert len(heard_by_bob) == 1, f"bob did not hear his own push on {bob_channel!r}"


def test_another_space_cannot_notify_a_space(lab, spaces):
    alice, bob = spaces["alice"], spaces["bob"]
    bob_channel = own_channel(bob)
    bob_ear = lab.login_conn("bob")
    _listen(bob_ear, [bob_channel])
    for ch in _guessable_channels(lab, alice):
        for _ in range(6):
            try:
                alice.conn.execute("SELECT pg_notify(%s, '')", (ch,))
            except psycopg.errors.InsufficientPrivilege:
                pass
            alice.conn.execute(sql.SQL("NOTIFY {}").format(sql.Identifier(ch)))
    heard = list(bob_ear.notifies(timeout=2.0))
    assert heard == [], f"alice's NOTIFYs reached bob's daemon ({len(heard)} on {bob_channel!r})"


# -- item 7: no general SQL session ------------------------------------------------------------


@pytest.mark.parametrize("statement", [
    "CREATE TEMP TABLE loot (x bytea)",
    "SELECT lo_from_bytea(0, 'x')",
    "SELECT lo_create(0)",
    "SELECT lo_import('/etc/hostname')",
])
def test_a_device_login_cannot_store_things_outside_the_api(lab, spaces, statement):
    conn = lab.login_conn("alice")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


@pytest.mark.parametrize("dbname", ["postgres", "template1"])
def test_a_device_login_cannot_connect_to_other_databases(lab, spaces, dbname):
    """Beyond the list: another database of the server still grants PUBLIC the advisory-lock,
    temp and large-object functions (and the lock table is server-wide)."""
    role, password = lab.logins["alice"]
    with pytest.raises(psycopg.OperationalError, match="permission denied|not permitted|pg_hba.conf rejects"):
        lab.connect(role, password, dbname=dbname)


# -- item 8: size limits -----------------------------------------------------------------------

BIG = "x" * MiB


@pytest.mark.parametrize("field", ["target", "moved_from", "conflict_of"])
def test_a_push_with_a_huge_field_is_refused(lab, spaces, field):
    alice = spaces["alice"]
    data = b"small"
    upload_small(alice, data)
    row = symlink_row(1, "l", BIG) if field == "target" else file_row(1, "f.txt", data, **{field: BIG})
    with pytest.raises(HubError) as err:
        alice.push("docs", [row])
    assert not isinstance(err.value, HubUnreachable), err.value
    too_long = {k: v for k, v in longest_text(lab.owner()).items() if v >= 64 * 1024}
    assert too_long == {}, f"stored anyway (bytes): {too_long}"


@pytest.mark.parametrize("shape", ["a column short", "a column NULL"])
def test_a_push_whose_columns_do_not_line_up_is_refused(lab, spaces, shape):
    """shoal.push takes one array per column: a device login calling it with columns of other
    lengths (unnest would pad the short ones with NULLs: a row without its target or base) is
    refused as a whole, and nothing is stored."""
    alice = spaces["alice"]
    data = b"lined up"
    upload_small(alice, data)
    row = file_row(1, "a.txt", data)
    columns = [[row.get(c)] for c in Hub._PUSH_COLUMNS]
    at = Hub._PUSH_COLUMNS.index("target")
    columns[at] = [] if shape == "a column short" else None
    conn = lab.login_conn("alice")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute(Hub._PUSH, (alice.device_id, alice.incarnation_id, "docs", *columns))
    assert lab.owner().execute("SELECT count(*) FROM shoal.changes").fetchone()[0] == 0


def test_register_device_refuses_a_huge_name(lab, spaces):
    with pytest.raises(HubError):
        spaces["alice"].register("n" * MiB)
    too_long = {k: v for k, v in longest_text(lab.owner()).items() if v >= 64 * 1024}
    assert too_long == {}, f"stored anyway (bytes): {too_long}"


@pytest.mark.parametrize("name", ["evil\x1b]0;owned\x07", "evil\x1b[2J", "line\nbreak", "nul-ish\x7f"])
def test_register_device_refuses_control_characters(lab, spaces, name):
    with pytest.raises(HubError):
        spaces["alice"].register(name)
    owner = lab.owner()
    names = [r[0] for r in owner.execute("SELECT name FROM shoal.devices").fetchall()]
    assert name not in names


def test_log_sync_bounds_the_error_it_stores(lab, spaces):
    import time

    try:
        spaces["alice"].log_sync("docs", "error", 0, 0, time.monotonic(), "E" * MiB)
    except HubError as e:
        assert not isinstance(e, HubUnreachable), e
    too_long = {k: v for k, v in longest_text(lab.owner()).items() if v > 8 * 1024}
    assert too_long == {}, f"stored anyway (bytes): {too_long}"


@pytest.mark.parametrize("call", ["put_blocks", "put_small_contents"])
def test_a_block_over_16_mib_is_refused(lab, spaces, call):
    data = os.urandom(MAX_BLOCK + 64 + 1)  # a sealed block may be up to 64 bytes longer than a block
    alice = spaces["alice"]
    with pytest.raises(HubError) as err:
        if call == "put_blocks":
            alice.put_blocks([(sha(data), data)])
        else:
            alice.put_small_contents([(sha(data), data)], 32 * MiB)
    assert not isinstance(err.value, HubUnreachable), err.value
    assert stored_anywhere(lab.owner(), sha(data)) == []


# -- item 9: a long path -----------------------------------------------------------------------


def test_a_long_path_is_refused_alone_and_the_folder_goes_on(lab, spaces):
    alice = spaces["alice"]
    parts = [os.urandom(100).hex()[:200] for _ in range(17)]  # random: not compressible
    long_path = "/".join(parts)
    assert 3300 < len(long_path.encode()) < 3500 and max(len(p) for p in parts) < 255
    data = b"deep file"
    upload_small(alice, data)
    try:
        assert [r.status for r in alice.push("docs", [file_row(1, long_path, data)])] == ["accepted"]
        next_seq = 2
    except HubError as e:
        assert not isinstance(e, HubUnreachable), f"a refused row was reported as an outage: {e}"
        assert isinstance(e, HubRowRefused), e
        next_seq = 2
    assert [r.status for r in alice.push("docs", [file_row(next_seq, "short.txt", data)])] == ["accepted"]


# -- item 12: no dedup oracle ------------------------------------------------------------------


def test_put_small_contents_does_not_tell_what_another_space_has(lab, spaces):
    alice, bob = spaces["alice"], spaces["bob"]
    known = os.urandom(3000)
    upload_small(bob, known)
    fresh = os.urandom(3000)
    for_known = alice.put_small_contents([(sha(known), known)], MIN_BLOCK)
    for_fresh = alice.put_small_contents([(sha(fresh), fresh)], MIN_BLOCK)
    assert for_known == for_fresh, (for_known, for_fresh)


def test_put_blocks_does_not_tell_what_another_space_has(lab, spaces):
    alice, bob = spaces["alice"], spaces["bob"]
    known = os.urandom(3000)
    bob.put_blocks([(sha(known), known)])
    fresh = os.urandom(3000)
    for_known = alice.put_blocks([(sha(known), known)])
    for_fresh = alice.put_blocks([(sha(fresh), fresh)])
    assert for_known == for_fresh, (for_known, for_fresh)


# -- item 13: opaque role names ----------------------------------------------------------------


def test_role_names_do_not_reveal_device_names(lab, spaces):
    bob_phone = lab.device("bobs_iphone", "bob", name="bobs-secret-iphone", register_as="bobs-secret-iphone")
    role = lab.logins["bobs_iphone"][0]
    for word in ("bobs", "secret", "iphone"):
        assert word not in role.lower(), role
    bob_phone.devices()  # bob's device is connected while alice looks
    alice = lab.login_conn("alice")
    seen = []
    seen += [r[0] for r in alice.execute("SELECT rolname FROM pg_roles").fetchall()]
    seen += [str(v) for r in alice.execute(
        "SELECT usename, application_name, client_hostname, query FROM pg_stat_activity").fetchall()
        for v in r if v is not None]
    seen += [r[0] for r in alice.execute(
        "SELECT m.roleid::regrole::text || ' ' || m.member::regrole::text || ' '"
        " || m.grantor::regrole::text FROM pg_auth_members m").fetchall()]
    leaks = [s for s in seen if any(w in s.lower() for w in ("bobs", "secret", "iphone"))]
    assert leaks == [], f"space alice sees bob's device name in: {leaks}"


# -- Citus readiness ---------------------------------------------------------------------------


def test_space_is_in_every_key_of_every_space_table(hub_url):
    with psycopg.connect(hub_url, autocommit=True) as owner:
        tables = [r[0] for r in owner.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid"
            " WHERE c.relnamespace = 'shoal'::regnamespace AND c.relkind IN ('r', 'p')"
            " AND a.attname = 'space' AND NOT a.attisdropped ORDER BY 1").fetchall()]
        assert tables
        problems = []
        for table in tables:
            keys = owner.execute(
                "SELECT i.indexrelid::regclass::text, i.indisprimary,"
                " EXISTS (SELECT 1 FROM unnest(i.indkey) k JOIN pg_attribute a"
                "         ON a.attrelid = i.indrelid AND a.attnum = k WHERE a.attname = 'space')"
                " FROM pg_index i WHERE i.indrelid = ('shoal.' || quote_ident(%s))::regclass"
                " AND i.indisunique", (table,)).fetchall()
            if not any(primary for _, primary, _ in keys):
                problems.append(f"{table}: no primary key")
            problems += [f"{table}: {name} has no space" for name, _, has in keys if not has]
        assert problems == []


# -- beyond the list ---------------------------------------------------------------------------


def test_api_calls_in_one_open_transaction_cannot_exhaust_the_lock_table(lab, spaces):
    """Beyond the list (item 3 through the API itself): with advisory locks revoked, a login can
    still call shoal.push for thousands of folders inside one open transaction; every call keeps
    its locks (the folder lock, the temp table push_in) until commit. Bob's push must still work."""
    tx = lab.login_conn("alice", autocommit=False)
    alice = Hub(tx, spaces["alice"].device_id, spaces["alice"].incarnation_id, call_timeout=60)
    bob = spaces["bob"]
    data = b"bob's file"
    upload_small(bob, data)
    t = None
    try:
        tx.execute("SELECT 1")  # the transaction she holds open (below: savepoints in it)
        for i in range(3000):
            try:
                with tx.transaction():  # a savepoint: alice keeps what she got so far
                    alice.push(f"f{i}", [])
            except HubError:
                break
        done: dict = {}

        def bob_push():
            try:
                done["result"] = [r.status for r in bob.push("docs", [file_row(1, "b.txt", data)])]
            except BaseException as e:  # noqa: BLE001 - reported below
                done["error"] = e

        t = threading.Thread(target=bob_push, daemon=True)
        t.start()
        t.join(10.0)
        assert not t.is_alive(), "bob's push hangs while alice's transaction is open"
        assert done.get("result") == ["accepted"], done
    finally:
        _end(tx)
        if t is not None:
            t.join(30)


API_CALLS_AS = {
    "push": lambda h: h.push("docs", []),
    "pull": lambda h: h.pull("docs", 0),
    "ack_pull": lambda h: (h.ack_pull("docs", 10**9), h._send_acks()),  # acks go with the next statement
    "horizon_and_pull": lambda h: h.horizon_and_pull("docs", 0),
    "heads": lambda h: h.heads("docs"),
    "heads_at": lambda h: h.heads_at("docs", ["x"]),
    "missing_contents": lambda h: h.missing_contents([EMPTY_SHA]),
    "missing_blocks": lambda h: h.missing_blocks([EMPTY_SHA]),
    "put_blocks": lambda h: h.put_blocks([(sha(b"x"), b"x")]),
    "put_small_contents": lambda h: h.put_small_contents([(sha(b"x"), b"x")], MIN_BLOCK),
    "put_content": lambda h: h.put_content(EMPTY_SHA, 0, MIN_BLOCK, []),
    "get_contents": lambda h: h.get_contents([EMPTY_SHA]),
    "get_blocks": lambda h: h.get_blocks([sha(b"x")]),
    "log_sync": lambda h: h.log_sync("docs", "error", 0, 0, 0.0, "pwned"),
    "devices": lambda h: h.devices(),
    "dupes": lambda h: h.dupes(),
    "register": lambda h: h.register("renamed-by-alice"),
}


@pytest.mark.parametrize("call", list(API_CALLS_AS))
def test_a_login_cannot_act_as_another_device(lab, spaces, call):
    """Beyond the list: alice's login passing bob's device id to every API function."""
    alice, bob = spaces["alice"], spaces["bob"]
    as_bob = Hub(alice.conn, bob.device_id, str(uuid.uuid4()), call_timeout=60)
    with pytest.raises(HubError) as err:
        API_CALLS_AS[call](as_bob)
    assert not isinstance(err.value, HubUnreachable), err.value
    assert "renamed-by-alice" not in [d["name"] for d in bob.devices()]


def test_a_folder_id_is_only_a_value(lab, spaces):
    """Beyond the list: a folder id made of SQL is stored as given and crosses no space."""
    alice, bob = spaces["alice"], spaces["bob"]
    data = b"x"
    upload_small(alice, data)
    upload_small(bob, data)
    bob.push("docs", [file_row(1, "b.txt", data)])
    evil = "docs' OR space <> 'alice' --"
    assert [r.status for r in alice.push(evil, [file_row(1, "a.txt", data)])] == ["accepted"]
    assert [c.path for c in alice.pull(evil, 0)] == ["a.txt"]
    assert alice.pull("docs", 0) == [] and alice.heads("docs") == []
    assert [c.path for c in bob.pull("docs", 0)] == ["b.txt"]


# -- encrypted folders (issue 11) ---------------------------------------------------------------


def test_the_sealed_content_api_cannot_poison_another_space(lab, spaces):
    alice, bob, bob2 = spaces["alice"], spaces["bob"], spaces["bob2"]
    data = os.urandom(1000)
    mine = os.urandom(1000)
    alice.put_sealed_small([(sha(data), sha(mine), mine)], MIN_BLOCK)  # bob's content id, her bytes
    alice.put_sealed_content(sha(data)[:63] + "0", MIN_BLOCK, [sha(mine)])
    assert bob.missing_contents([sha(data)]) == {sha(data)}
    upload_small(bob, data)
    assert [r.status for r in bob.push("photos", [file_row(1, "p.jpg", data)])] == ["accepted"]
    assert fetch(bob2, sha(data)) == data
    with pytest.raises(HubError):  # a sealed block is checked against its name like any block
        alice.put_sealed_small([(sha(data), sha(data), mine)], MIN_BLOCK)


def test_folder_keys_are_per_space_and_a_sealed_folder_takes_only_sealed_rows(lab, spaces):
    alice, bob, bob2 = spaces["alice"], spaces["bob"], spaces["bob2"]
    assert bob.set_folder_key("vault", '{"v":1,"k":"bob"}', None)
    assert not bob2.set_folder_key("vault", '{"v":1,"k":"bob2"}', None)  # set already: read it again
    assert bob2.folder_key("vault") == ('{"v":1,"k":"bob"}', False)
    assert alice.folder_key("vault") == (None, False)  # another space's folder of the same id is its own
    assert alice.set_folder_key("vault", '{"v":1,"k":"alice"}', None)
    assert bob.folder_key("vault")[0] == '{"v":1,"k":"bob"}'

    data = os.urandom(100)
    upload_small(bob, data)
    with pytest.raises(FolderKeyProblem, match="encrypted on the hub"):
        bob.push("vault", [file_row(1, "plain.txt", data)])  # readable rows never enter a sealed folder
    with pytest.raises(FolderKeyProblem, match="not encrypted"):
        bob.push("notes", [file_row(2, "x", data, sealed=b"\x00" * 40)])
    assert [r.status for r in bob.push("notes", [file_row(3, "plain.txt", data)])] == ["accepted"]
    with pytest.raises(FolderKeyProblem, match="unencrypted history"):
        bob2.set_folder_key("notes", '{"v":1}', None)
    with pytest.raises(HubError):
        bob.set_folder_key("vault", "x" * 2000, '{"v":1,"k":"bob"}')
