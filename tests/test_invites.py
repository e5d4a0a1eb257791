"""Invites at the hub: a one-time login that expires, claimed once with a SCRAM verifier made on
the device (the password never travels), refused afterwards."""

from __future__ import annotations

import datetime as dt
import time

import psycopg
import pytest

from shoal.hub import admin as hub_admin
from shoal.hub.client import connect
from tests.fixtures.server import role_dsn


@pytest.fixture
def invited(hub_url):
    """An invite's login (valid for a minute) and its one-time password; dropped afterwards."""
    made = []

    def make(name: str, seconds: float = 60):
        with connect(hub_url) as owner:
            role, _ = hub_admin.add_device(
                owner, name, hub_url_for_devices=str(hub_url), password="one-time-password-0123",
                valid_until=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds))
        made.append(role)
        return role
    yield make
    with connect(hub_url) as owner:
        for role in made:
            owner.execute(f'DROP ROLE IF EXISTS "{role}"')


def _verifier(conn: psycopg.Connection, password: str, role: str) -> str:
    return conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()


def test_an_invite_is_claimed_once_and_its_password_stops_working(hub_url, invited):
    role = invited("phone-a")
    with psycopg.connect(role_dsn(hub_url, role, "one-time-password-0123"), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InvalidParameterValue):  # a password is not a verifier
            conn.execute("SELECT shoal.claim_invite(%s)", ("my-new-password",))
        conn.execute("SELECT shoal.claim_invite(%s)", (_verifier(conn, "the-device-own-password", role),))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="already used"):
            conn.execute("SELECT shoal.claim_invite(%s)", (_verifier(conn, "another", role),))
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(role_dsn(hub_url, role, "one-time-password-0123")).close()
    with psycopg.connect(role_dsn(hub_url, role, "the-device-own-password")) as conn:
        assert conn.execute("SELECT shoal.hub_id()").fetchone()[0]
    with connect(hub_url) as owner:
        assert owner.execute("SELECT rolvaliduntil IS NULL OR rolvaliduntil = 'infinity' FROM pg_roles"
                             " WHERE rolname = %s", (role,)).fetchone() == (True,)  # its own does not expire


def test_an_unclaimed_invite_expires(hub_url, invited):
    role = invited("phone-b", seconds=1)
    time.sleep(1.5)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(role_dsn(hub_url, role, "one-time-password-0123")).close()


def test_the_owner_and_other_roles_cannot_claim(hub_url):
    with connect(hub_url) as owner:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="no invite"):
            owner.execute("SELECT shoal.claim_invite(%s)", (_verifier(owner, "x", "postgres"),))


def test_the_owner_ends_device_sessions_that_lift_their_own_time_limits(hub_url, invited):
    """Role settings are defaults a device may lift with SET: shoal.reap_device_sessions (run by
    the daemon that owns an embedded hub) ends a session idle in a transaction past the limit."""
    role = invited("holder")
    holder = psycopg.connect(role_dsn(hub_url, role, "one-time-password-0123"))
    holder.execute("SET idle_in_transaction_session_timeout = 0")
    holder.execute("SELECT shoal.hub_id()")  # a transaction left open (psycopg: not autocommit)
    time.sleep(1.2)
    with connect(hub_url) as owner:
        assert owner.execute("SELECT shoal.reap_device_sessions('1 second', '5 minutes')").fetchone()[0] == 1
        assert owner.execute("SELECT shoal.reap_device_sessions('1 second', '5 minutes')").fetchone()[0] == 0
    with pytest.raises(psycopg.OperationalError):
        holder.execute("SELECT 1")
    holder.close()
