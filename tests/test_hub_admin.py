"""`shoal hub add-device` / `revoke-device` against a real PostgreSQL: the device login can use
the hub API as its own device and nothing else, and revoking it shuts it out at once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import json
import subprocess
import sys
import uuid

import psycopg
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from shoal.errors import HubError, UsageError
from shoal.hub import admin as hub_admin
from shoal.hub.client import Hub, connect
from tests.fixtures.server import role_dsn
from tests.rows import file_row, sha as content_sha


@pytest.fixture
def uniq(pg_dsn):
    """Device names unique to this test: roles are cluster-wide, shared by every test database.
    The roles made are dropped afterwards."""
    tag = uuid.uuid4().hex[:8]
    yield lambda name: f"{name}-{tag}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for (role,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s",
                                    (f"shoal\\_dev\\_%\\_{tag}",)).fetchall():
            conn.execute(f'DROP ROLE "{role}"')


def _admin(hub_url: str) -> psycopg.Connection:
    return connect(hub_url)


def _add(hub_url: str, name: str) -> tuple[str, str, str]:
    password = hub_admin.new_password()
    conn = _admin(hub_url)
    try:
        role, url = hub_admin.add_device(conn, name, hub_url_for_devices=hub_url, password=password)
    finally:
        conn.close()
    return role, url, password


def _as_device(hub_url: str, role: str, password: str) -> psycopg.Connection:
    return psycopg.connect(role_dsn(hub_url, role, password), autocommit=True)  # over TCP, SCRAM


def _scram_matches(verifier: str, password: str) -> bool:
    """Whether a stored SCRAM-SHA-256 verifier was made from `password` (RFC 5802/7677)."""
    m = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)", verifier)
    assert m, verifier
    iterations, salt, stored_key, server_key = int(m[1]), *(base64.b64decode(g) for g in m.groups()[1:])
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return (hashlib.sha256(client_key).digest() == stored_key
            and hmac.new(salted, b"Server Key", "sha256").digest() == server_key)


def _small_file_row(seq: int, path: str, data: bytes) -> tuple[dict, str]:
    return file_row(seq, path, data), content_sha(data)


# -- add-device --------------------------------------------------------------------------------


def test_add_device_creates_a_least_privilege_login(hub_url, uniq):
    name = uniq("Pixel-7")
    role, url, password = _add(hub_url, name)
    assert role.startswith("shoal_dev_") and "pixel" not in role  # opaque: pg_roles is public
    with _admin(hub_url) as conn:
        assert hub_admin.login_of(conn, name) == role
        rolcanlogin, rolinherit, rolsuper, rolcreatedb, rolcreaterole, rolconnlimit, rolpassword, config = (
            conn.execute("SELECT a.rolcanlogin, a.rolinherit, a.rolsuper, a.rolcreatedb, a.rolcreaterole,"
                         " a.rolconnlimit, a.rolpassword, r.rolconfig FROM pg_authid a"
                         " JOIN pg_roles r ON r.oid = a.oid WHERE a.rolname = %s", (role,)).fetchone())
        assert rolcanlogin and rolinherit
        assert not (rolsuper or rolcreatedb or rolcreaterole)
        assert rolconnlimit == 5
        # The stored password is exactly the one shown to the user (and only as a verifier).
        assert _scram_matches(rolpassword, password)
        assert password not in rolpassword
        assert "idle_in_transaction_session_timeout=60s" in config
        assert "statement_timeout=5min" in config
        inherit = conn.execute(
            "SELECT m.inherit_option FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
            " JOIN pg_roles r ON r.oid = m.member WHERE g.rolname = 'shoal_device' AND r.rolname = %s",
            (role,)).fetchone()
        assert inherit == (True,)
        assert conn.execute("SELECT device_id, revoked_at FROM shoal.device_roles WHERE role_name = %s",
                            (role,)).fetchone() == (None, None)
    # The URL: same server and database, the device's role, never a password.
    got, admin = conninfo_to_dict(url), conninfo_to_dict(hub_url)
    assert got["user"] == role and "password" not in got and password not in url
    assert (got.get("host"), got.get("port"), got["dbname"]) == (admin.get("host"), admin.get("port"),
                                                                  admin["dbname"])
    # The login works, with the timeouts set for its sessions.
    with _as_device(hub_url, role, password) as dev:
        assert dev.execute("SELECT session_user, current_setting('idle_in_transaction_session_timeout'),"
                           " current_setting('statement_timeout')").fetchone() == (role, "1min", "5min")


def test_device_login_uses_the_api_only_as_its_own_device(hub_url, uniq):
    role, _, password = _add(hub_url, uniq("pixel"))
    other = str(uuid.uuid4())
    with _admin(hub_url) as owner:  # the owner's role may register any device
        owner.execute("SELECT shoal.register_device(%s, 'laptop')", (other,))
    mine = str(uuid.uuid4())
    hub = Hub(_as_device(hub_url, role, password), mine, str(uuid.uuid4()))
    try:
        hub_id = hub.register("pixel-7")
        assert hub_id == hub.hub_id()
        row, sha = _small_file_row(1, "a.txt", b"hello")
        assert hub.put_small_contents([(sha, b"hello")], 1 << 17) == 1
        assert [r.status for r in hub.push("photos", [row])] == ["accepted"]
        assert [c.path for c in hub.pull("photos", 0)] == ["a.txt"]
        # Bound now: any other device id is refused, registered or not.
        for stranger in (other, str(uuid.uuid4())):
            as_other = Hub(hub.conn, stranger, str(uuid.uuid4()))
            with pytest.raises(HubError, match="may not act as device|bound to another device"):
                as_other.push("photos", [_small_file_row(1, "b.txt", b"hello")[0]])
            with pytest.raises(HubError, match="may not act as device"):
                as_other.pull("photos", 0)
            with pytest.raises(HubError, match="bound to another device"):
                as_other.register("evil")
    finally:
        hub.close()
    with _admin(hub_url) as owner:
        assert owner.execute("SELECT device_id::text FROM shoal.device_roles WHERE role_name = %s",
                             (role,)).fetchone() == (mine,)
        assert owner.execute("SELECT count(*) FROM shoal.changes WHERE device_id = %s",
                             (other,)).fetchone() == (0,)


@pytest.mark.parametrize("statement", [
    "SELECT * FROM shoal.changes",
    "SELECT * FROM shoal.device_roles",
    "SELECT * FROM shoal.blocks",
    "INSERT INTO shoal.heads VALUES ('default', 'f', 'p', 1, gen_random_uuid(), gen_random_uuid(), 'file', 0, 0,"
    " 'x', NULL, false)",
    "UPDATE shoal.device_roles SET device_id = NULL",
    "DELETE FROM shoal.hub_meta",
    "CREATE TABLE shoal.mine (x int)",
])
def test_device_login_cannot_touch_the_tables(hub_url, uniq, statement):
    role, _, password = _add(hub_url, uniq("pixel"))
    with _as_device(hub_url, role, password) as dev:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            dev.execute(statement)


def test_add_device_twice_is_refused_and_changes_nothing(hub_url, uniq):
    role, _, password = _add(hub_url, uniq("tablet"))
    with _admin(hub_url) as conn:
        before = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
        with pytest.raises(UsageError, match="already exists"):
            hub_admin.add_device(conn, uniq("TABLET"), hub_url_for_devices=hub_url)
        assert conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone() == before
        assert _scram_matches(before[0], password)


@pytest.mark.parametrize("name", ["", "a" * 41, "has space", "semi;colon", "quote'", "dot.name", "ümlaut",
                                  "../x"])
def test_bad_device_names_are_refused_before_anything_is_created(hub_url, name):
    with _admin(hub_url) as conn:
        roles = conn.execute("SELECT count(*) FROM pg_roles").fetchone()
        with pytest.raises(UsageError, match="not allowed"):
            hub_admin.add_device(conn, name, hub_url_for_devices=hub_url)
        assert conn.execute("SELECT count(*) FROM pg_roles").fetchone() == roles
        assert conn.execute("SELECT count(*) FROM shoal.device_roles").fetchone() == (0,)


def test_add_device_on_a_hub_without_schema_says_hub_init(hub_dsn, uniq):
    name = uniq("phone")
    with _admin(hub_dsn) as conn:
        with pytest.raises(HubError, match="shoal hub init"):
            hub_admin.add_device(conn, name, hub_url_for_devices=hub_dsn)
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'shoal\\_dev\\_%%'"
                            " AND NOT pg_has_role(oid, 'shoal_device', 'MEMBER')").fetchone() == (0,)


# -- revoke-device -----------------------------------------------------------------------------


def test_revoke_device_shuts_the_login_out(hub_url, uniq):
    name = uniq("old-phone")
    role, _, password = _add(hub_url, name)
    device_id = str(uuid.uuid4())
    session = _as_device(hub_url, role, password)
    Hub(session, device_id, str(uuid.uuid4())).register("old-phone")
    with _admin(hub_url) as conn:
        assert hub_admin.revoke_device(conn, name) == (role, 1, 0)
        rolcanlogin, = conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        assert not rolcanlogin
        assert conn.execute("SELECT revoked_at IS NOT NULL FROM shoal.device_roles WHERE role_name = %s",
                            (role,)).fetchone() == (True,)
        assert conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (role,)).fetchone() == (0,)
        assert conn.execute("SELECT pg_has_role(%s, 'shoal_device', 'USAGE')", (role,)).fetchone() == (False,)
    # The open session was terminated ...
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT shoal.hub_id()")
    session.close()
    # ... and the login cannot come back.
    with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
        _as_device(hub_url, role, password)
    # Revoking again is harmless; the name cannot be reused for a new login.
    with _admin(hub_url) as conn:
        assert hub_admin.revoke_device(conn, name) == (role, 0, 0)
        with pytest.raises(UsageError, match="already exists"):
            hub_admin.add_device(conn, name, hub_url_for_devices=hub_url)


def test_revoke_refuses_roles_that_are_not_device_logins(hub_url, uniq):
    name = uniq("bystander")
    role = "shoal_dev_" + name.replace("-", "_")  # what its login would have been called before
    with _admin(hub_url) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        with pytest.raises(UsageError, match="no hub login"):
            hub_admin.revoke_device(conn, name)
        assert conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (role,)).fetchone() == (True,)


def test_a_hub_owner_without_superuser_can_add_and_revoke(hub_dsn, uniq):
    """The usual production setup: the hub owner has CREATEROLE and ADMIN on shoal_device only."""
    from shoal.hub.schema import hub_init

    owner = "owner_" + uuid.uuid4().hex[:8]
    name = uniq("np")
    role = None
    with connect(hub_dsn) as su:
        dbname = su.execute("SELECT current_database()").fetchone()[0]
        su.execute(f'CREATE ROLE "{owner}" LOGIN CREATEROLE PASSWORD \'owner-pw\'')
        su.execute(f'GRANT CREATE ON DATABASE "{dbname}" TO "{owner}"')
        if not su.execute("SELECT 1 FROM pg_roles WHERE rolname = 'shoal_device'").fetchone():
            su.execute("CREATE ROLE shoal_device NOLOGIN")
        su.execute(f'GRANT shoal_device TO "{owner}" WITH ADMIN OPTION, INHERIT FALSE, SET FALSE')
    owner_url = role_dsn(hub_dsn, owner, "owner-pw")  # not the superuser: over TCP, SCRAM
    try:
        with connect(owner_url) as conn:
            hub_init(conn)
            assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)
            password = hub_admin.new_password()
            role = hub_admin.add_device(conn, name, hub_url_for_devices=owner_url, password=password)[0]
        device_id = str(uuid.uuid4())
        session = _as_device(hub_dsn, role, password)
        Hub(session, device_id, str(uuid.uuid4())).register(name)
        with connect(owner_url) as conn:
            # It may not signal the session directly: revoke_device takes the role's privileges
            # for one transaction to terminate it, and gives them up again.
            assert hub_admin.revoke_device(conn, name) == (role, 1, 0)
            assert conn.execute("SELECT pg_has_role(current_user, %s, 'USAGE')", (role,)).fetchone() == (False,)
        with pytest.raises(psycopg.OperationalError):
            session.execute("SELECT shoal.hub_id()")
        session.close()
    finally:
        with connect(hub_dsn) as su:
            if role:
                su.execute(f'DROP ROLE IF EXISTS "{role}"')
            su.execute(f'DROP OWNED BY "{owner}" CASCADE')
            su.execute(f'DROP ROLE "{owner}"')


# -- the command -------------------------------------------------------------------------------


def _cli(*args: str, config: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "shoal", *(["--config", config] if config else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_add_device_prints_url_and_password_once_with_storage_instructions(hub_url, uniq, tmp_path):
    name = uniq("laptop")
    # --url given: the config (here: none at all) is never read
    done = _cli("hub", "add-device", name, "--url", str(hub_url), config=str(tmp_path / "absent.yaml"))
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "no invite: this hub is reached through a Unix socket" in text  # the test owner's socket
    password = re.search(r"password: (\S+)", text)[1]
    assert text.count(password) == 2  # shown once, and once inside the command that stores it
    assert f"umask 077; printf '%s' '{password}' > ~/.config/shoal/hub-password" in text
    assert "password_file: ~/.config/shoal/hub-password" in text
    url = re.search(r"url: +(\S+)", text)[1]
    role = conninfo_to_dict(url)["user"]
    with _admin(hub_url) as conn:
        assert hub_admin.login_of(conn, name) == role
    assert "laptop" not in role  # opaque: pg_roles is readable by every login of the server
    with _admin(hub_url) as conn:
        verifier, = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
    assert _scram_matches(verifier, password)
    # The printed URL itself reaches the hub as the device (over TCP: the test server lets only
    # its superuser use the socket without a password).
    with psycopg.connect(role_dsn(url, password=password)) as dev:
        assert dev.execute("SELECT session_user, current_database()").fetchone() == (
            role, conninfo_to_dict(hub_url)["dbname"])


def test_the_configured_hub_is_used_when_no_url_is_given(hub_url, uniq, tmp_path):
    name = uniq("desk")
    config = tmp_path / "owner.yaml"
    config.write_text(yaml.safe_dump({"device": {"name": "owner"}, "state_dir": str(tmp_path / "state"),
                                      "hub": {"url": str(hub_url)}, "folders": []}))
    added = _cli("hub", "add-device", name, "--json", config=str(config))
    assert added.returncode == 0, added.stderr
    made = json.loads(added.stdout)
    assert made["invite"] is None and "Unix socket" in made["no_invite_because"]
    with _admin(hub_url) as conn:
        role = hub_admin.login_of(conn, name)
    assert made["login"] == role
    revoked = _cli("hub", "revoke-device", name, config=str(config))
    assert revoked.returncode == 0, revoked.stderr
    assert f"revoked hub login {role}" in revoked.stdout
    with _admin(hub_url) as conn:
        assert conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (role,)).fetchone() == (False,)


def test_a_bad_name_is_refused_without_connecting():
    done = _cli("hub", "add-device", "no way", "--url", "postgresql://x@127.0.0.1:1/x")
    assert done.returncode == 2 and "is not allowed" in done.stderr


# -- the device URL (pure) ---------------------------------------------------------------------


@pytest.mark.parametrize("admin, expected", [
    ("postgresql://owner:secret@hub.example.org:5433/shoal?sslmode=verify-full",
     "postgresql://shoal_dev_x@hub.example.org:5433/shoal?sslmode=verify-full"),
    ("postgresql://owner@hub.example.org/shoal", "postgresql://shoal_dev_x@hub.example.org/shoal"),
    ("postgresql://owner@hub.example.org/shoal?sslmode=verify-full&sslcert=/home/me/owner.crt"
     "&sslkey=/home/me/owner.key&sslrootcert=/etc/ca.pem",
     "postgresql://shoal_dev_x@hub.example.org/shoal?sslmode=verify-full&sslrootcert=/etc/ca.pem"),
    ("host=10.0.0.2 port=5432 dbname=shoal user=owner password=secret",
     "postgresql://shoal_dev_x@10.0.0.2:5432/shoal"),
    ("postgresql://owner@[::1]:5432/shoal", "postgresql://shoal_dev_x@[::1]:5432/shoal"),
    ("host=/run/shoal/hub port=5999 dbname=shoal user=owner",
     "postgresql://shoal_dev_x@/shoal?host=/run/shoal/hub&port=5999"),
])
def test_device_url(admin, expected):
    url = hub_admin.device_url(admin, "shoal_dev_x")
    assert url == expected
    assert "secret" not in url
    assert conninfo_to_dict(url)["user"] == "shoal_dev_x"


def test_device_names_and_opaque_role_names():
    assert hub_admin.check_device_name("Pixel-7") == "pixel-7"
    assert hub_admin.check_device_name("a" * 40) == "a" * 40
    with pytest.raises(UsageError):
        hub_admin.check_device_name("a" * 41)
    a, b = hub_admin.new_role_name(), hub_admin.new_role_name()
    assert a != b and a.startswith("shoal_dev_") and len(a) == len("shoal_dev_") + 16


# -- a device login may not take over another role's device, nor act on another hub of the server --


def test_a_new_login_cannot_take_over_a_device_registered_by_another_role(hub_url, uniq):
    victim = str(uuid.uuid4())
    with _admin(hub_url) as owner:
        owner.execute("SELECT shoal.register_device(%s, 'laptop')", (victim,))
    role, _, password = _add(hub_url, uniq("newcomer"))
    hub = Hub(_as_device(hub_url, role, password), victim, str(uuid.uuid4()))
    try:
        try:
            hub.register("evil")
        except HubError:
            return
        raise AssertionError("an unbound device login bound itself to another role's device")
    finally:
        hub.close()


def test_a_device_login_of_one_hub_is_refused_by_another_hub_on_the_same_server(hub_url, pg_dsn, uniq):
    from shoal.hub.schema import hub_init

    role, _, password = _add(hub_url, uniq("roamer"))
    other_db = "hub_other_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{other_db}"')
    other = make_conninfo(pg_dsn, dbname=other_db)
    try:
        with connect(other) as owner:
            hub_init(owner)
        hub = Hub(_as_device(other, role, password), str(uuid.uuid4()), str(uuid.uuid4()))
        try:
            try:
                hub.register("roamer")
            except HubError:
                return
            raise AssertionError("a device login of another hub registered a device here")
        finally:
            hub.close()
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{other_db}" WITH (FORCE)')
