"""The hub schema: table migrations applied once each, API functions re-applied as a whole when
their files change (a changed body, a changed signature, a function removed), idempotently."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

from shoal.hub import schema


def _hub_init_cli(url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shoal", "hub", "init", "--url", url],
                          capture_output=True, text=True, timeout=120)


def _functions(conn) -> dict[str, str]:
    return dict(conn.execute(
        "SELECT p.oid::regprocedure::text, p.prosrc FROM pg_proc p"
        " WHERE p.pronamespace = 'shoal'::regnamespace").fetchall())


def test_hub_init_twice_through_the_cli(hub_dsn):
    first = _hub_init_cli(hub_dsn)
    assert first.returncode == 0, first.stderr
    assert "applied migrations" in first.stdout
    with psycopg.connect(hub_dsn, autocommit=True) as conn:
        before = _functions(conn)
        api = conn.execute("SELECT value FROM shoal.hub_meta WHERE key = 'api_version'").fetchone()[0]
    second = _hub_init_cli(hub_dsn)
    assert second.returncode == 0, second.stderr
    assert "schema up to date" in second.stdout
    with psycopg.connect(hub_dsn, autocommit=True) as conn:
        assert _functions(conn) == before
        assert conn.execute("SELECT value FROM shoal.hub_meta WHERE key = 'api_version'").fetchone()[0] == api
    assert api == schema.api_version()
    assert "shoal.push(uuid,uuid,text,bigint[],text[],text[],bigint[],bigint[],text[],text[],boolean[],bigint[],text[],text[],bytea[])" in before


def test_a_changed_api_file_is_re_applied_and_a_removed_function_dropped(hub_url, monkeypatch):
    shipped = schema.api_files()
    bumped = []
    for name, text in shipped:
        if name == "overview.sql":
            text = text.replace("-- Views for `shoal devices`", "-- Views (version bump) for `shoal devices`")
            text = text.replace("RETURN QUERY\n    SELECT h.sha256, max(h.size)",
                                "RETURN QUERY -- bumped\n    SELECT h.sha256, max(h.size)")
            text += ("\nCREATE OR REPLACE FUNCTION shoal.only_in_the_bump() RETURNS integer\n"
                     "LANGUAGE sql SECURITY DEFINER SET search_path = shoal, pg_temp AS $$ SELECT 1 $$;\n")
        bumped.append((name, text))
    monkeypatch.setattr(schema, "api_files", lambda: bumped)
    with psycopg.connect(hub_url, autocommit=True) as conn:
        schema.hub_init(conn)
        fns = _functions(conn)
        assert "-- bumped" in fns["shoal.duplicate_contents(uuid)"]
        assert "shoal.only_in_the_bump()" in fns
        # the device group may run the new function, PUBLIC may not
        assert conn.execute("SELECT has_function_privilege('shoal_device', 'shoal.only_in_the_bump()', 'EXECUTE'),"
                            " has_function_privilege('public', 'shoal.only_in_the_bump()', 'EXECUTE')"
                            ).fetchone() == (True, False)
    monkeypatch.setattr(schema, "api_files", lambda: shipped)
    with psycopg.connect(hub_url, autocommit=True) as conn:
        schema.hub_init(conn)
        fns = _functions(conn)
        assert "-- bumped" not in fns["shoal.duplicate_contents(uuid)"]
        assert "shoal.only_in_the_bump()" not in fns
        assert conn.execute("SELECT value FROM shoal.hub_meta WHERE key = 'api_version'").fetchone()[0] \
            == schema.api_version()


@pytest.mark.parametrize("internal", schema.INTERNAL_FUNCTIONS)
def test_internal_functions_are_not_executable_by_devices(hub_url, internal):
    with psycopg.connect(hub_url, autocommit=True) as conn:
        assert conn.execute("SELECT has_function_privilege('shoal_device', %s, 'EXECUTE')",
                            (internal,)).fetchone() == (False,)


def test_every_space_table_has_the_space_in_every_key(hub_url):
    """Citus needs the distribution column in every primary key and unique constraint."""
    with psycopg.connect(hub_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT c.relname, i.indexrelid::regclass::text,"
            " EXISTS (SELECT 1 FROM unnest(i.indkey) k JOIN pg_attribute a"
            "         ON a.attrelid = c.oid AND a.attnum = k WHERE a.attname = 'space')"
            " FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
            " WHERE c.relnamespace = 'shoal'::regnamespace AND (i.indisunique OR i.indisprimary)"
            " AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'space'"
            "             AND NOT a.attisdropped)").fetchall()
    assert rows, "no space tables found"
    assert [r for r in rows if not r[2]] == []
    assert {"changes", "heads", "contents", "devices", "device_folders"} <= {r[0] for r in rows}


H = "0123456789abcdef" * 4  # a well-formed SHA-256 in hex


@pytest.mark.parametrize("value, ok", [
    (H, True), (H.upper(), False), (H[:63], False), (H + "0", False), ("g" + H[1:], False), ("", False),
    ("é" + H[2:], False), (H[:62] + "\n0", False),
])
def test_the_tables_take_only_64_lowercase_hex_digits_as_a_hash(hub_url, value, ok):
    """The tables' own checks (a second line behind the API's): a hash column holds 64 lowercase
    hex digits, as the regex '^[0-9a-f]{64}$' said before these checks were made cheaper."""
    statements = [
        ("INSERT INTO shoal.blocks(sha256, data) VALUES (%s, '')", (value,)),
        ("INSERT INTO shoal.block_spaces(space, sha256) VALUES ('s', %s)", (value,)),
        ("INSERT INTO shoal.contents(space, sha256, size, block_size, blocks) VALUES ('s', %s, 0, 1, '{}')", (value,)),
        ("INSERT INTO shoal.heads(space, folder_id, path, path_hash, version, device_id, incarnation, kind, size,"
         " mtime_ns, sha256, deleted) VALUES ('s', 'f', 'p', '\\x00', 1, gen_random_uuid(), gen_random_uuid(),"
         " 'file', 0, 0, %s, false)", (value,)),
        ("INSERT INTO shoal.changes(space, folder_id, path, path_hash, device_id, incarnation, seq, kind, size,"
         " mtime_ns, sha256, deleted, payload_md5) VALUES ('s', 'f', 'p', '\\x00', gen_random_uuid(),"
         " gen_random_uuid(), 1, 'file', 0, 0, %s, false, '')", (value,)),
    ]
    with psycopg.connect(hub_url) as conn:
        for statement, args in statements:
            with conn.transaction(force_rollback=True):
                if ok:
                    conn.execute(statement, args)
                else:
                    with pytest.raises(psycopg.errors.CheckViolation):
                        conn.execute(statement, args)


@pytest.mark.parametrize("blocks, ok", [
    ([], True), ([H], True), ([H, H, H], True), ([H[:63]], False), ([H[:63], H + "0"], False),
    ([H, ""], False), ([H, None], False), ([H + "," + H], False), ([H.upper()], False), ([H, "x" * 64], False),
])
def test_a_content_lists_only_well_formed_block_hashes(hub_url, blocks, ok):
    with psycopg.connect(hub_url) as conn, conn.transaction(force_rollback=True):
        statement = ("INSERT INTO shoal.contents(space, sha256, size, block_size, blocks)"
                     " VALUES ('s', %s, 0, 1, %s::text[])")
        if ok:
            conn.execute(statement, (H, blocks))
        else:
            with pytest.raises(psycopg.errors.CheckViolation):
                conn.execute(statement, (H, blocks))
