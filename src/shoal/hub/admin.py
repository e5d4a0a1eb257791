"""Hub administration: least-privilege hub logins for devices (`shoal hub add-device`,
`shoal hub revoke-device`).

A device login is a PostgreSQL LOGIN role `shoal_dev_<name>` that is a member of the group
role `shoal_device` (made by `shoal hub init`), which may only use schema `shoal` and execute
its SECURITY DEFINER API functions; the tables stay the hub owner's. The login is listed in
`shoal.device_roles`, unbound until its first `shoal.register_device` binds it to that
device id; from then on the hub refuses any other device id from it.

These functions run as the hub owner (a role with CREATEROLE and ADMIN on `shoal_device`).
The password is made here, shown once, and sent to the server only as a SCRAM verifier, so
it never appears in a statement text or a server log.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from shoal.config import HubConfig
from shoal.core.invite import Invite, encode_invite
from shoal.errors import HubError, UsageError
from shoal.hub.pgerrors import describe_error, translate
from shoal.hub.schema import DEVICE_GROUP_ROLE

ROLE_PREFIX = "shoal_dev_"
CONNECTION_LIMIT = 5
IDLE_IN_TRANSACTION_TIMEOUT = "60s"
STATEMENT_TIMEOUT = "5min"
TERMINATE_WAIT_MS = 5000
_NAME = re.compile(r"[a-z0-9_-]{1,40}")
# Conninfo parameters not copied into the query of a device's URL: the admin's identity and
# secrets (user, password, client certificate, local files), and what the URL says elsewhere.
_DROPPED_PARAMS = {"user", "password", "passfile", "sslcert", "sslkey", "sslpassword", "service",
                   "host", "hostaddr", "port", "dbname", "application_name"}


def check_device_name(name: str) -> str:
    """The device name as the hub keeps it (lowercased). Raises UsageError unless it is 1 to 40
    of a-z, 0-9, `_` and `-`."""
    lowered = name.lower()
    if not _NAME.fullmatch(lowered):
        raise UsageError(
            f"device name {name!r} is not allowed: use 1 to 40 letters, digits, '_' or '-'")
    return lowered


def new_role_name() -> str:
    """An opaque login name: roles are visible server-wide (pg_roles, pg_stat_activity), so they
    must not tell anyone which devices, or whose, a hub serves."""
    return ROLE_PREFIX + secrets.token_hex(8)


def _legacy_role_name(name: str) -> str:
    """The login a device got before names were opaque: `shoal_dev_` + its name, `-` as `_`."""
    return ROLE_PREFIX + name.replace("-", "_")


def login_of(conn: psycopg.Connection, name: str) -> str | None:
    """The hub login made for device `name` (the live one if there are several), None if none."""
    lowered = check_device_name(name)
    row = conn.execute(
        "SELECT role_name FROM shoal.device_roles WHERE name = %s OR (name IS NULL AND role_name = %s)"
        " ORDER BY revoked_at IS NOT NULL, created_at DESC LIMIT 1",
        (lowered, _legacy_role_name(lowered))).fetchone()
    return row[0] if row else None


def device_url(admin_conninfo: str, role: str) -> str:
    """A `postgresql://ROLE@host:port/db?...` URL for a device, built from the admin's conninfo
    (URL or key=value): same server, database and TLS settings, the device's role, no password.

    A Unix-socket host goes into the query (`?host=/path`). Raises UsageError if the conninfo
    cannot be parsed.
    """
    try:
        params = conninfo_to_dict(admin_conninfo)
    except psycopg.ProgrammingError as e:
        raise UsageError(f"cannot parse the hub URL: {describe_error(e)}") from None
    host = str(params.get("host") or "")
    port = str(params.get("port") or "")
    query: dict[str, str] = {}
    netloc_host = ""
    if host.startswith("/") or "," in host:
        query["host"] = host  # a socket directory or several hosts: not expressible as netloc
        if port:
            query["port"] = port
            port = ""
    elif ":" in host:
        netloc_host = f"[{host}]"  # an IPv6 address
    else:
        netloc_host = host
    if not host and params.get("hostaddr"):
        netloc_host = str(params["hostaddr"])
        if ":" in netloc_host:
            netloc_host = f"[{netloc_host}]"
    for key in sorted(params):
        if key not in _DROPPED_PARAMS and params[key] is not None:
            query[key] = str(params[key])
    netloc = f"{quote(role, safe='')}@{netloc_host}" + (f":{port}" if port and netloc_host else "")
    if port and not netloc_host:
        query["port"] = port
    dbname = quote(str(params.get("dbname") or ""), safe="")
    url = f"postgresql://{netloc}/{dbname}"
    if query:
        url += "?" + urlencode(query, safe="/")
    return url


def _require_hub(conn: psycopg.Connection) -> None:
    """Raises HubError unless the hub schema and the device group role exist."""
    row = conn.execute("SELECT to_regclass('shoal.device_roles') IS NOT NULL,"
                       " EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s)",
                       (DEVICE_GROUP_ROLE,)).fetchone()
    if not row[0]:
        raise HubError("the hub has no shoal schema: run `shoal hub init` first")
    if not row[1]:
        raise HubError(f"the hub has no role {DEVICE_GROUP_ROLE}: run `shoal hub init` as a role "
                       "with CREATEROLE (or a superuser) to create it")


def _encrypted_password(conn: psycopg.Connection, password: str, role: str) -> str:
    """The password as the verifier the server stores (SCRAM, or whatever password_encryption says)."""
    return conn.pgconn.encrypt_password(password.encode(), role.encode()).decode()


def new_password() -> str:
    """A random password for a device login (32 URL-safe characters). Raises nothing."""
    return secrets.token_urlsafe(24)


SPACE_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")


def add_device(conn: psycopg.Connection, name: str, *, hub_url_for_devices: str,
               password: str | None = None, space: str = "default",
               valid_until: dt.datetime | None = None) -> tuple[str, str]:
    """Create the hub login of device `name`; returns (role, its URL without a password).

    `password` is the login's password (make it with new_password() to show it to the user);
    without one a random password is set that nobody knows (the owner can reset it).

    The role: LOGIN with a random password, INHERIT member of `shoal_device`, CONNECTION LIMIT 5,
    no superuser/createdb/createrole/replication/bypassrls, idle_in_transaction_session_timeout
    60s and statement_timeout 5min; listed in shoal.device_roles, unbound until it registers.
    With `valid_until` (an invite) the password stops working then, unless the device claimed
    the invite first (shoal.claim_invite). All in one transaction: on any error nothing is left.

    Raises UsageError for a bad name or if the role already exists (also a revoked one),
    HubError if the hub has no schema or group role, or the connected role may not create
    roles, HubUnreachable if the connection fails.
    """
    lowered = check_device_name(name)
    role = new_role_name()
    url = device_url(hub_url_for_devices, role)
    password = password or new_password()
    ident = sql.Identifier(role)
    try:
        with conn.transaction():
            _require_hub(conn)
            if login_of(conn, lowered) is not None:
                raise UsageError(f"a hub login for device {name!r} already exists; "
                                 "choose another name, or revoke it with `shoal hub revoke-device`")
            verifier = _encrypted_password(conn, password, role)
            conn.execute(sql.SQL(
                "CREATE ROLE {} LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
                " NOBYPASSRLS CONNECTION LIMIT {} PASSWORD {} VALID UNTIL {} IN ROLE {}").format(
                    ident, sql.Literal(CONNECTION_LIMIT), sql.Literal(verifier),
                    sql.Literal(valid_until.isoformat() if valid_until else "infinity"),
                    sql.Identifier(DEVICE_GROUP_ROLE)))
            conn.execute(sql.SQL("ALTER ROLE {} SET idle_in_transaction_session_timeout = {}").format(
                ident, sql.Literal(IDLE_IN_TRANSACTION_TIMEOUT)))
            conn.execute(sql.SQL("ALTER ROLE {} SET statement_timeout = {}").format(
                ident, sql.Literal(STATEMENT_TIMEOUT)))
            conn.execute("INSERT INTO shoal.device_roles(role_name, space, name, invite_expires)"
                         " VALUES (%s, %s, %s, %s)", (role, space, lowered, valid_until))
    except psycopg.errors.DuplicateObject:
        raise UsageError(f"hub login {role} already exists (device {name!r})") from None
    except psycopg.errors.InsufficientPrivilege as e:
        raise HubError(f"cannot create hub login {role}: {describe_error(e)} (connect as the hub "
                       f"owner, a role with CREATEROLE and ADMIN on {DEVICE_GROUP_ROLE})") from e
    except psycopg.Error as e:
        raise translate(e, f"creating hub login {role}") from e
    return role, url


@dataclass(frozen=True)
class InviteTarget:
    """Where a new device reaches the hub, as an invite carries it."""

    hosts: tuple[str, ...]
    port: int
    dbname: str
    ca_fingerprint: str | None  # the hub CA the device pins; None: a public certificate
    sslmode: str


def invite_target_for_url(conninfo: str) -> InviteTarget:
    """The invite target of a hub the user runs (`hub.url` or `--url`): its TCP host(s) and port,
    its database; pinned to the CA in the URL's `sslrootcert` if there is one (verify-ca), else
    a public certificate (verify-full). Raises UsageError for a Unix-socket hub (no other device
    can reach it) or an unreadable sslrootcert."""
    from shoal.hub.tls import ca_fingerprint

    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as e:
        raise UsageError(f"cannot parse the hub URL: {describe_error(e)}") from None
    hosts = tuple(h for h in str(params.get("host") or params.get("hostaddr") or "").split(",") if h)
    if not hosts or any(h.startswith("/") or h.startswith("@") for h in hosts):
        raise UsageError("this hub is reached through a Unix socket: no other device can reach it. "
                         "Serve it (hub.serve.listen, `shoal init --serve HOST:PORT`) or give "
                         "`--url` with the address devices use")
    fingerprint, sslmode = None, "verify-full"
    if params.get("sslrootcert") and params["sslrootcert"] != "system":
        try:
            fingerprint = ca_fingerprint(Path(str(params["sslrootcert"])).expanduser().read_bytes())
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read the hub's CA certificate {params['sslrootcert']}: {e}") from None
        sslmode = "verify-ca"
    return InviteTarget(hosts, int(str(params.get("port") or 5432).split(",")[0]),
                        str(params.get("dbname") or "postgres"), fingerprint, sslmode)


def invite_target_for_served_hub(listen: str, state_dir: Path) -> InviteTarget:
    """The invite target of the embedded hub served on `listen` (HOST:PORT) with the hub CA of
    `state_dir`: that host, or for a wildcard address this machine's name and addresses."""
    from shoal.hub.embedded import HUB_DB
    from shoal.hub.tls import ca_fingerprint, ensure_hub_tls

    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        names = [socket.gethostname()]
        try:
            names += sorted({ai[4][0] for ai in socket.getaddrinfo(socket.gethostname(), None)
                             if not ai[4][0].startswith(("127.", "::1", "fe80"))})
        except OSError:
            pass
        hosts = tuple(dict.fromkeys(names))
    else:
        hosts = (host,)
    tls = ensure_hub_tls(state_dir)
    return InviteTarget(hosts, int(port), HUB_DB, ca_fingerprint(tls.ca_cert.read_bytes()), "verify-ca")


def hub_offer(conn: psycopg.Connection, space: str) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """(hub id, the folder ids the hub knows in `space`, those of them that are encrypted), read
    as the hub owner."""
    with conn.transaction():
        conn.execute("SELECT set_config('shoal.space', %s, true)", (space,))  # row level security
        hub_id = conn.execute("SELECT value FROM shoal.hub_meta WHERE key = 'hub_id'").fetchone()[0]
        rows = conn.execute("SELECT folder_id, sealed_key IS NOT NULL FROM shoal.folders WHERE space = %s"
                            " ORDER BY folder_id LIMIT 256", (space,)).fetchall()
    return hub_id, tuple(f for f, _ in rows), tuple(f for f, sealed in rows if sealed)


def make_invite(conn: psycopg.Connection, name: str, target: InviteTarget, *, hub_url_for_devices: str,
                space: str = "default", expires_in: float = 86400.0,
                now: float | None = None) -> tuple[Invite, str, str]:
    """Create the login of device `name` with a one-time password valid for `expires_in`
    seconds and return (the invite, its token, the login's URL). Raises as add_device does."""
    now = time.time() if now is None else now
    expires = int(now + expires_in)
    password = new_password()
    role, url = add_device(conn, name, hub_url_for_devices=hub_url_for_devices, password=password, space=space,
                           valid_until=dt.datetime.fromtimestamp(expires, dt.timezone.utc))
    hub_id, folders, encrypted = hub_offer(conn, space)
    invite = Invite(hosts=target.hosts, port=target.port, dbname=target.dbname, role=role, password=password,
                    hub_id=hub_id, ca_fingerprint=target.ca_fingerprint, folders=folders, expires=expires,
                    sslmode=target.sslmode, encrypted=encrypted)
    return invite, encode_invite(invite), url


def set_quota(conn: psycopg.Connection, space: str, *, max_changes: int | None,
              max_bytes: int | None) -> dict:
    """Set the quota of a space (None leaves a bound as it is, 0 removes it); returns the space's
    usage and bounds. Raises UsageError for a bad space name, HubError if the hub refuses."""
    if not SPACE_NAME.fullmatch(space):
        raise UsageError(f"a space name is 1-40 letters, digits, '-' or '_', not {space!r}")
    try:
        with conn.transaction():
            _require_hub(conn)
            conn.execute("SELECT set_config('shoal.space', %s, true)", (space,))  # row level security
            row = conn.execute(
                "INSERT INTO shoal.space_usage AS u (space, max_changes, max_bytes)"
                " VALUES (%(s)s, nullif(%(c)s, 0), nullif(%(b)s, 0))"
                " ON CONFLICT (space) DO UPDATE SET"
                "  max_changes = CASE WHEN %(c)s IS NULL THEN u.max_changes ELSE nullif(%(c)s, 0) END,"
                "  max_bytes = CASE WHEN %(b)s IS NULL THEN u.max_bytes ELSE nullif(%(b)s, 0) END"
                " RETURNING space, changes, bytes, max_changes, max_bytes",
                {"s": space, "c": max_changes, "b": max_bytes}).fetchone()
    except psycopg.Error as e:
        raise translate(e, f"setting the quota of space {space}") from e
    return dict(zip(("space", "changes", "bytes", "max_changes", "max_bytes"), row))


class Revoked(NamedTuple):
    role: str
    terminated: int  # sessions of the login ended
    remaining: int  # sessions that could not be ended (they can no longer call the API)


def revoke_device(conn: psycopg.Connection, name: str) -> Revoked:
    """Revoke the hub login of device `name`.

    The role becomes NOLOGIN and leaves `shoal_device` (so a session that survives can execute
    nothing), its device_roles row gets revoked_at (the hub refuses it as any device); after
    the commit, every open session of it is terminated. Revoking twice is harmless.

    Raises UsageError for a bad name or if no device login of that name exists (so no other
    role can be revoked through this), HubError if the hub refuses (e.g. the connected role
    may not alter the role), HubUnreachable if the connection fails. Sessions that cannot be
    terminated are counted in `remaining`, not raised.
    """
    check_device_name(name)
    role = "?"
    try:
        with conn.transaction():
            _require_hub(conn)
            role = login_of(conn, name)
            if role is None:
                raise UsageError(f"no hub login for device {name!r} on this hub")
            ident = sql.Identifier(role)
            conn.execute("SELECT 1 FROM shoal.device_roles WHERE role_name = %s FOR UPDATE", (role,))
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            conn.execute("UPDATE shoal.device_roles SET revoked_at = coalesce(revoked_at, now())"
                         " WHERE role_name = %s", (role,))
            if exists:
                conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(ident))
                member = conn.execute(
                    "SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
                    " JOIN pg_roles r ON r.oid = m.member WHERE g.rolname = %s AND r.rolname = %s",
                    (DEVICE_GROUP_ROLE, role)).fetchone()
                if member:
                    conn.execute(sql.SQL("REVOKE {} FROM {}").format(
                        sql.Identifier(DEVICE_GROUP_ROLE), ident))
        # After the commit: a terminated device that reconnects at once finds NOLOGIN.
        terminated = _terminate_sessions(conn, role)
        remaining = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s"
                                 " AND pid <> pg_backend_pid()", (role,)).fetchone()[0]
    except psycopg.errors.InsufficientPrivilege as e:
        raise HubError(f"cannot revoke hub login {role}: {describe_error(e)} (connect as the hub "
                       f"owner, a role with CREATEROLE and ADMIN on {role} and {DEVICE_GROUP_ROLE})") from e
    except psycopg.Error as e:
        raise translate(e, f"revoking hub login {role}") from e
    return Revoked(role, terminated, remaining)


def _terminate_sessions(conn: psycopg.Connection, role: str) -> int:
    """Terminate every session of `role` (waiting for them to end); returns how many ended.

    A superuser or pg_signal_backend member may do so directly. A CREATEROLE owner may only
    signal roles whose privileges it has, so it takes them for one transaction (it has ADMIN
    on the role it created) and gives them up again. Raises psycopg.OperationalError only.
    """
    query = ("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, %s)) FROM pg_stat_activity"
             " WHERE usename = %s AND pid <> pg_backend_pid()")
    try:
        with conn.transaction():
            return conn.execute(query, (TERMINATE_WAIT_MS, role)).fetchone()[0]
    except psycopg.errors.InsufficientPrivilege:
        pass
    try:
        with conn.transaction():
            conn.execute(sql.SQL("GRANT {} TO CURRENT_USER WITH INHERIT TRUE, SET FALSE").format(
                sql.Identifier(role)))
            n = conn.execute(query, (TERMINATE_WAIT_MS, role)).fetchone()[0]
            conn.execute(sql.SQL("REVOKE {} FROM CURRENT_USER").format(sql.Identifier(role)))
            return n
    except psycopg.OperationalError:
        raise
    except psycopg.Error:
        return 0


def invite_target(hub: HubConfig | None, state_dir: Path | None, url: str | None = None) -> InviteTarget | str:
    """Where an invited device reaches this hub: the `url` given (`--url`), else the configured
    hub's URL, else the served embedded hub. A text saying why no device can, if none can."""
    try:
        if url:
            return invite_target_for_url(url)
        if hub is None or state_dir is None:
            return "no hub given"
        if hub.url != "embedded":
            return invite_target_for_url(hub.url)
    except UsageError as e:
        return str(e)
    if hub.serve_listen:
        return invite_target_for_served_hub(hub.serve_listen, state_dir)
    return ("the embedded hub is not served to other devices: set hub.serve.listen "
            "(`shoal init --serve HOST:PORT` on a new setup) and restart shoal")


DEFAULT_INVITE_SECONDS = 86400.0


@dataclass(frozen=True)
class NewDevice:
    """What `shoal hub add-device` made: the login, its one-time password, and the invite
    that carries both (None, with the reason, when no other device could reach the hub)."""

    name: str
    space: str
    role: str
    url: str  # the login's URL, without a password, for setting the device up by hand
    password: str
    token: str | None
    expires: str | None  # ISO 8601
    no_invite_because: str | None


def new_device(conn: psycopg.Connection, name: str, target: InviteTarget | str, *, hub_url_for_devices: str,
               space: str | None = None, expires_in: float | None = None) -> NewDevice:
    """Create the login of device `name` and, where devices can reach the hub, its invite.
    Raises UsageError (bad name or space, login exists), HubError, HubUnreachable."""
    check_device_name(name)
    space = space or "default"
    if not SPACE_NAME.fullmatch(space):
        raise UsageError(f"a space name is 1-40 letters, digits, '-' or '_', not {space!r}")
    if isinstance(target, InviteTarget):
        invite, token, url = make_invite(conn, name, target, hub_url_for_devices=hub_url_for_devices,
                                         space=space, expires_in=expires_in or DEFAULT_INVITE_SECONDS)
        expires = dt.datetime.fromtimestamp(invite.expires, dt.timezone.utc).isoformat(timespec="seconds")
        return NewDevice(name, space, invite.role, url, invite.password, token, expires, None)
    password = new_password()
    role, url = add_device(conn, name, hub_url_for_devices=hub_url_for_devices, space=space, password=password)
    return NewDevice(name, space, role, url, password, None, None, target)


def qr_text(text: str) -> str:
    """`text` as a QR code drawn with block characters for a terminal (segno)."""
    import io

    import segno

    buf = io.StringIO()
    segno.make(text, error="l").terminal(out=buf, compact=True)
    return buf.getvalue()
