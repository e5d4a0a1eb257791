"""The hub schema: numbered table migrations (which only grow) and the API functions (which
are replaced as a whole whenever their files change).

Tables live in `sql/tables/NNNN_name.sql`, applied once each in order, each with its row in
`shoal.schema_migrations`. The API lives in `sql/api/*.sql` (`CREATE OR REPLACE FUNCTION`):
its version is the SHA-256 of those files, kept in `shoal.hub_meta`; `hub init` re-applies the
whole API in one transaction when it differs, dropping the functions of the old API first so a
changed signature or a removed function leaves nothing behind. Then EXECUTE is revoked from
PUBLIC and granted to the device group role.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from importlib import resources

import psycopg
from psycopg import sql

from shoal.errors import HubError, HubUnreachable
from shoal.hub.pgerrors import describe_error, translate
from shoal.sql_files import numbered_sql_files, pending_migrations

log = logging.getLogger("shoal.hub")
HUB_SCHEMA = "shoal"
MIGRATION_LOCK = 0x73686F616C  # advisory lock key for `hub init` (taken by the owner only)
DEVICE_GROUP_ROLE = "shoal_device"


def table_migrations() -> list[tuple[int, str, str]]:
    """(number, file name, SQL text) of every table migration shipped with the package."""
    return numbered_sql_files("shoal.hub", "sql/tables")


def api_files() -> list[tuple[str, str]]:
    """(file name, SQL text) of every API file, in name order."""
    folder = resources.files("shoal.hub").joinpath("sql/api")
    return sorted((e.name, e.read_text(encoding="utf-8")) for e in folder.iterdir() if e.name.endswith(".sql"))


def api_version() -> str:
    """The SHA-256 of the API files as shipped: equal on the hub means nothing to re-apply."""
    h = hashlib.sha256()
    for name, text in api_files():
        h.update(name.encode() + b"\0" + text.encode() + b"\0")
    return h.hexdigest()


def latest_tables() -> int:
    return table_migrations()[-1][0]


def hub_init(conn: psycopg.Connection) -> tuple[str, list[int]]:
    """Create or migrate the hub schema and (re-)apply its API; returns (hub id, migrations applied).

    Idempotent, and safe from two machines at once: it holds an advisory lock throughout.
    Raises HubError if the schema cannot be created (e.g. the role lacks privileges),
    HubUnreachable if the connection fails.
    """
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(HUB_SCHEMA)))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS shoal.schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            have = conn.execute("SELECT coalesce(max(version), 0) FROM shoal.schema_migrations").fetchone()[0]
            applied = []
            for number, name, text in pending_migrations(table_migrations(), have):
                conn.execute(text)
                conn.execute("INSERT INTO shoal.schema_migrations(version, name) VALUES (%s, %s)",
                             (number, name))
                applied.append(number)
            _apply_api(conn, force=bool(applied))
            _grant_device_role(conn)
            hub_id = conn.execute("SELECT value FROM shoal.hub_meta WHERE key='hub_id'").fetchone()[0]
    except psycopg.OperationalError as e:
        raise HubUnreachable(f"hub unreachable: {describe_error(e)}") from e
    except psycopg.Error as e:
        raise HubError(f"hub init failed: {describe_error(e)}") from e
    return hub_id, applied


def _apply_api(conn: psycopg.Connection, *, force: bool) -> bool:
    """Replace the API functions if their version on the hub differs; returns whether it did."""
    version = api_version()
    row = conn.execute("SELECT value FROM shoal.hub_meta WHERE key = 'api_version'").fetchone()
    if row and row[0] == version and not force:
        return False
    # Every function of the schema belongs to the API: drop them all (CASCADE takes nothing
    # else: no table or policy depends on an API function), then create the current ones.
    for (signature,) in conn.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p"
            " WHERE p.pronamespace = %s::regnamespace", (HUB_SCHEMA,)).fetchall():
        conn.execute(sql.SQL("DROP FUNCTION {} CASCADE").format(sql.SQL(signature)))
    for _name, text in api_files():
        conn.execute(text)
    conn.execute("REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA shoal FROM PUBLIC")
    conn.execute("INSERT INTO shoal.hub_meta(key, value) VALUES ('api_version', %s)"
                 " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (version,))
    return True


# API functions only other API functions call (as the hub owner): a device login calling them
# directly could learn another space's channel (channel_of) or act outside shoal.enter.
INTERNAL_FUNCTIONS = ("shoal.enter(uuid)", "shoal.refuse_open_transaction()", "shoal.is_foreign_device_login()", "shoal.channel_of(text)",
                      "shoal.store_blocks(text, text[], bytea[])", "shoal.add_usage(text, bigint, bigint)", "shoal.check_hashes(text[])",
                      "shoal.reap_device_sessions(interval, interval)",
                      # Garbage collection and statistics (gc.sql): the hub owner's, across spaces.
                      "shoal.gc_spaces()", "shoal.gc_folders(text)", "shoal.gc_begin()",
                      "shoal.gc_plan_folder(text, text, timestamptz, boolean)",
                      "shoal.gc_collect_changes(text, text, bigint, integer)",
                      "shoal.gc_plan_contents(text, timestamptz, boolean)", "shoal.gc_contents(text, bigint, integer)",
                      "shoal.gc_plan_block_spaces(text, timestamptz, boolean)",
                      "shoal.gc_block_spaces(text, bigint, integer)", "shoal.gc_repair_block_spaces(text)",
                      "shoal.gc_open_transactions()", "shoal.gc_still_open(text[])", "shoal.gc_plan_orphans()",
                      "shoal.gc_orphan_blocks(bigint, integer, bigint)",
                      "shoal.stats_folders(text)", "shoal.stats_space(text)", "shoal.stats_hub()")
# Built-in functions a device login must not call in the hub's database: advisory locks (hub-wide,
# guessable keys; taking thousands exhausts the lock table) and large objects (storage outside
# any quota). Function privileges are per database, so this touches nothing else on the server.
_RESTRICTED_BUILTINS = ("SELECT p.oid::regprocedure::text FROM pg_proc p"
                        " WHERE p.pronamespace = 'pg_catalog'::regnamespace"
                        " AND (p.proname LIKE 'pg%%advisory%%' OR p.proname IN"
                        " ('lo_creat', 'lo_create', 'lo_from_bytea', 'lo_import', 'lo_put', 'lowrite',"
                        "  'lo_open', 'lo_truncate', 'lo_truncate64', 'lo_unlink'))")


def _restrict_device_logins(conn: psycopg.Connection) -> list[str]:
    """Take from PUBLIC (so from every device login) what a device must not have in the hub's
    database: TEMPORARY, CONNECT (given back to the device group and the owner), the
    advisory-lock and large-object functions (given back to the owner). Returns what could not
    be restricted (a hub owner that is neither superuser nor the database's owner may not)."""
    db = sql.Identifier(conn.info.dbname)
    me = sql.Identifier(conn.execute("SELECT current_user").fetchone()[0])
    group = sql.Identifier(DEVICE_GROUP_ROLE)
    steps = [
        ("TEMPORARY on the hub database", [sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(db),
                                           sql.SQL("GRANT TEMPORARY ON DATABASE {} TO {}").format(db, me)]),
        ("CONNECT on the hub database", [sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(db),
                                         sql.SQL("GRANT CONNECT ON DATABASE {} TO {}, {}").format(db, me, group)]),
    ]
    for (signature,) in conn.execute(_RESTRICTED_BUILTINS).fetchall():
        fn = sql.SQL(signature)
        steps.append((signature, [sql.SQL("REVOKE EXECUTE ON FUNCTION {} FROM PUBLIC").format(fn),
                                  sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(fn, me)]))
    refused = []
    for what, statements in steps:
        try:
            with conn.transaction():  # a savepoint: one refusal does not undo the others
                for st in statements:
                    conn.execute(st)
        except psycopg.errors.InsufficientPrivilege:
            refused.append(what)
    if refused:
        log.warning("the hub owner may not restrict %s for device logins (it is neither superuser nor the "
                    "database's owner): device logins keep them", ", ".join(refused[:3])
                    + (f" and {len(refused) - 3} more" if len(refused) > 3 else ""))
    return refused


def _grant_device_role(conn: psycopg.Connection) -> None:
    """The group role of device logins may execute the API functions and nothing else."""
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname=%s", (DEVICE_GROUP_ROLE,)).fetchone()
    if not exists:
        can = conn.execute(
            "SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
        if not can:
            return
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(DEVICE_GROUP_ROLE)))
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA shoal TO {}").format(sql.Identifier(DEVICE_GROUP_ROLE)))
    conn.execute(sql.SQL("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA shoal TO {}").format(
        sql.Identifier(DEVICE_GROUP_ROLE)))
    for signature in INTERNAL_FUNCTIONS:
        conn.execute(sql.SQL("REVOKE EXECUTE ON FUNCTION {} FROM {}").format(
            sql.SQL(signature), sql.Identifier(DEVICE_GROUP_ROLE)))
    _restrict_device_logins(conn)


def schema_state(conn: psycopg.Connection) -> tuple[int | None, str | None]:
    """The hub's table migration number and API version, as any role that may use the hub sees
    them: through `shoal.hub_version()` (a device login may not read the tables), or, on a hub
    from before that function, from the tables (only its owner can). (None, None): no schema.
    Raises HubUnreachable if the connection fails."""
    try:
        try:  # one round trip on any hub of this shoal (an older or empty one answers with an error)
            with contextlib.nullcontext() if conn.autocommit else conn.transaction():  # (a savepoint)
                tables, api = conn.execute("SELECT tables, api FROM shoal.hub_version()").fetchone()
            return tables, api
        except (psycopg.errors.UndefinedFunction, psycopg.errors.InvalidSchemaName):
            pass
        if not conn.execute("SELECT to_regclass('shoal.schema_migrations') IS NOT NULL").fetchone()[0]:
            return None, None
        return conn.execute("SELECT max(version) FROM shoal.schema_migrations").fetchone()[0], None
    except psycopg.Error as e:
        raise translate(e, "reading the hub's schema version") from e


def ensure_schema(conn: psycopg.Connection, *, may_init: bool = True) -> None:
    """Make sure the hub's schema and API are this shoal's (initialising or upgrading them when
    `may_init` and the role may), and not newer. Raises HubError otherwise."""
    tables, api = schema_state(conn)
    latest = latest_tables()
    if tables is not None and tables > latest:
        raise HubError(f"the hub schema ({tables}) is newer than this shoal ({latest}): upgrade shoal")
    if tables == latest and api == api_version():
        return
    if not may_init:
        raise HubError("the hub has no shoal schema (or an old one): run `shoal hub init`")
    if _is_device_login(conn):
        if tables is None:
            raise HubError("the hub has no shoal schema: run `shoal hub init` as the hub's owner")
        if tables < latest:
            raise HubError(f"the hub schema ({tables}) is older than this shoal ({latest}): "
                           "run `shoal hub init` as the hub's owner")
        return  # same tables, another build of the API: the owner's next `hub init` settles it
    hub_init(conn)


def _is_device_login(conn: psycopg.Connection) -> bool:
    """Whether the session is a device login (a superuser is a member of every role: not one)."""
    return conn.execute(
        "SELECT CASE WHEN r.rolsuper THEN false WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s)"
        " THEN pg_has_role(session_user, %s, 'MEMBER') ELSE false END"
        " FROM pg_roles r WHERE r.rolname = session_user",
        (DEVICE_GROUP_ROLE, DEVICE_GROUP_ROLE)).fetchone()[0]
