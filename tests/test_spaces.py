"""Spaces on one hub (e.g. a family's members): a device sees and changes only its own space,
row level security is enabled and forced, and knowing a content's hash does not give another
space its bytes."""

from __future__ import annotations

import hashlib
import uuid

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from shoal.hub import admin as hub_admin
from shoal.hub.client import Hub, connect
from tests.fixtures.server import role_dsn

SPACE_TABLES = ["device_folders", "block_spaces", "contents", "changes", "heads", "conflicts", "sync_log",
                "folders", "space_usage"]


@pytest.fixture
def family(hub_url, pg_dsn):
    """Two device logins, alice's phone and bob's phone, in spaces 'alice' and 'bob'."""
    tag = uuid.uuid4().hex[:8]
    hubs = {}
    roles = []
    admin = connect(hub_url)
    for who in ("alice", "bob"):
        role, _ = hub_admin.add_device(admin, f"{who}-{tag}", hub_url_for_devices=hub_url, space=who,
                                       password="pw")
        roles.append(role)
        conn = psycopg.connect(role_dsn(hub_url, role, "pw"), autocommit=True)
        hub = Hub(conn, str(uuid.uuid4()), str(uuid.uuid4()))
        hub.register(f"{who}-phone")
        hubs[who] = hub
    admin.close()
    yield hubs
    for hub in hubs.values():
        hub.close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for role in roles:
            conn.execute(f'DROP ROLE "{role}"')


def _row(seq, path, data):
    sha = hashlib.sha256(data).hexdigest()
    return {"seq": seq, "path": path, "kind": "file", "size": len(data), "mtime_ns": 1,
            "sha256": sha, "target": None, "deleted": False, "base": None}, sha


def test_a_device_sees_and_changes_only_its_own_space(family):
    alice, bob = family["alice"], family["bob"]
    a_row, a_sha = _row(1, "diary.txt", b"alice's diary")
    b_row, b_sha = _row(1, "diary.txt", b"bob's diary")
    alice.put_small_contents([(a_sha, b"alice's diary")], 128 * 1024)
    bob.put_small_contents([(b_sha, b"bob's diary")], 128 * 1024)
    # the same folder id and path in two spaces: two independent files, no conflict
    assert [r.status for r in alice.push("docs", [a_row])] == ["accepted"]
    assert [r.status for r in bob.push("docs", [b_row])] == ["accepted"]
    assert [(c.path, c.sha256) for c in alice.pull("docs", 0)] == [("diary.txt", a_sha)]
    assert [(c.path, c.sha256) for c in bob.pull("docs", 0)] == [("diary.txt", b_sha)]
    assert [d["name"] for d in alice.devices()] == ["alice-phone"]
    assert {h.sha256 for h in bob.heads("docs")} == {b_sha}


def test_knowing_a_hash_does_not_give_another_space_the_bytes(family, hub_url):
    alice, bob = family["alice"], family["bob"]
    secret = b"alice's photo bytes" * 1000
    sha = hashlib.sha256(secret).hexdigest()
    alice.put_small_contents([(sha, secret)], 128 * 1024)
    assert bob.get_contents([sha]) == {} and bob.get_blocks([sha]) == {}
    assert bob.missing_contents([sha]) == {sha}  # and bob cannot tell that alice has it
    assert bob.missing_blocks([sha]) == {sha}
    # Bob proves possession by uploading the bytes: then the stored block serves him too.
    with psycopg.connect(hub_url) as conn:
        blocks_before = conn.execute("SELECT count(*) FROM shoal.blocks").fetchone()[0]
    bob.put_small_contents([(sha, secret)], 128 * 1024)
    assert bob.get_blocks([sha]) == {sha: secret}
    with psycopg.connect(hub_url) as conn:
        assert conn.execute("SELECT count(*) FROM shoal.blocks").fetchone()[0] == blocks_before


def test_row_level_security_is_enabled_forced_and_filters_by_space(family, hub_url):
    alice = family["alice"]
    row, sha = _row(1, "a.txt", b"a")
    alice.put_small_contents([(sha, b"a")], 128 * 1024)
    alice.push("docs", [row])
    with psycopg.connect(hub_url, autocommit=True) as conn:
        flags = dict(conn.execute(
            "SELECT c.relname, c.relrowsecurity AND c.relforcerowsecurity FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'shoal' AND c.relkind = 'r'"
        ).fetchall())
        assert all(flags[t] for t in SPACE_TABLES), flags
        # A role that may read the table, but is no superuser, sees a space's rows only inside it.
        reader = f"rls_reader_{uuid.uuid4().hex[:8]}"
        conn.execute(f"CREATE ROLE {reader} LOGIN PASSWORD 'pw'")
        conn.execute(f"GRANT USAGE ON SCHEMA shoal TO {reader}")
        conn.execute(f"GRANT SELECT ON shoal.changes TO {reader}")
        conn.execute(f'GRANT CONNECT ON DATABASE "{conn.info.dbname}" TO {reader}')  # revoked from PUBLIC
    try:
        with psycopg.connect(role_dsn(hub_url, reader, "pw")) as conn:
            assert conn.execute("SELECT count(*) FROM shoal.changes").fetchone()[0] == 0
            conn.execute("SELECT set_config('shoal.space', 'bob', true)")
            assert conn.execute("SELECT count(*) FROM shoal.changes").fetchone()[0] == 0
            conn.execute("SELECT set_config('shoal.space', 'alice', true)")
            assert conn.execute("SELECT count(*) FROM shoal.changes").fetchone()[0] == 1
    finally:
        with psycopg.connect(hub_url, autocommit=True) as conn:
            conn.execute(f"REVOKE ALL ON shoal.changes FROM {reader}")
            conn.execute(f"REVOKE USAGE ON SCHEMA shoal FROM {reader}")
            conn.execute(f'REVOKE CONNECT ON DATABASE "{conn.info.dbname}" FROM {reader}')
            conn.execute(f"DROP ROLE {reader}")


def test_the_hub_owner_sets_a_quota_per_space_and_devices_see_their_use(family, hub_url):
    """`shoal hub quota SPACE` bounds what a space stores; a push past it is refused whole, other
    spaces are untouched, and a device reads its own space's use (as `shoal devices` shows it)."""
    import subprocess
    import sys

    from shoal.errors import HubError, HubUnreachable

    alice, bob = family["alice"], family["bob"]
    set_quota = subprocess.run([sys.executable, "-m", "shoal", "hub", "quota", "alice", "--changes", "2",
                                "--bytes", "1000", "--url", hub_url], capture_output=True, text=True, timeout=60)
    assert set_quota.returncode == 0, set_quota.stderr
    assert "quota 2" in set_quota.stdout
    rows = []
    for i in range(3):
        row, sha = _row(i + 1, f"f{i}.txt", f"file {i}".encode())
        alice.put_small_contents([(sha, f"file {i}".encode())], 128 * 1024)
        rows.append(row)
    assert [r.status for r in alice.push("docs", rows[:2])] == ["accepted", "accepted"]
    with pytest.raises(HubError, match="quota") as refused:
        alice.push("docs", rows[2:])
    assert not isinstance(refused.value, HubUnreachable)  # not an outage: retrying cannot help
    assert alice.usage() == {"space": "alice", "changes": 2, "bytes": 18, "max_changes": 2, "max_bytes": 1000}
    with pytest.raises(HubError, match="quota"):
        alice.put_blocks([(hashlib.sha256(b"x" * 2000).hexdigest(), b"x" * 2000)])
    # bob's space has no quota and is not affected
    b_row, b_sha = _row(1, "a.txt", b"bob")
    bob.put_small_contents([(b_sha, b"bob")], 128 * 1024)
    assert [r.status for r in bob.push("docs", [b_row])] == ["accepted"]
    assert bob.usage()["max_changes"] is None and bob.usage()["changes"] == 1
