"""Numbered SQL migrations for the local store, applied in order, each in one transaction."""

from __future__ import annotations

import apsw

from shoal.sql_files import numbered_sql_files, pending_migrations


def available_migrations() -> list[tuple[int, str, str]]:
    """(number, file name, SQL text) of every store migration shipped with the package, in order."""
    return numbered_sql_files("shoal.localstore", "migrations")


def current_version(conn: apsw.Connection) -> int:
    """The highest applied migration number, 0 for an empty database."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_schema WHERE type='table' AND name='schema_migrations'"
    ).fetchall()
    if not exists:
        return 0
    row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return row[0] or 0


def apply_migrations(conn: apsw.Connection, now: int, upto: int | None = None) -> list[int]:
    """Apply every migration above the current version (up to `upto`); returns those applied."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
    )
    have = current_version(conn)
    applied = []
    for number, name, sql in pending_migrations(available_migrations(), have, upto):
        with conn:  # one transaction: the schema change and its bookkeeping row
            conn.execute(sql)
            conn.execute(
                "INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, ?)",
                (number, name, now),
            )
        applied.append(number)
    return applied
