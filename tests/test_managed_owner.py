"""A managed PostgreSQL as the hub (issue 10, item 4): nobody is superuser there. The hub owner
is an ordinary role with CREATEROLE and CREATEDB only; `shoal hub init --url` and
`shoal hub add-device` work with it, and two devices with the logins it made sync, all through
the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import yaml

from tests.pgserver import TcpPostgres

pytestmark = pytest.mark.slow


def _shoal(*args: str, config: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "shoal", *(["--config", str(config)] if config else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def managed(tmp_path_factory):
    """A server of its own (as a managed one is: no shoal role on it yet) where the hub owner is
    a role with CREATEROLE and CREATEDB (no superuser) that creates its own database."""
    server = TcpPostgres(tmp_path_factory.mktemp("managed"))
    try:
        owner, db = "hubowner", "shoalhub"
        with psycopg.connect(server.admin_dsn(), autocommit=True) as su:
            su.execute(f"CREATE ROLE {owner} LOGIN CREATEROLE CREATEDB PASSWORD 'owner-password-123'")
        with psycopg.connect(server.tcp_dsn("postgres", owner, "owner-password-123"), autocommit=True) as conn:
            assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)
            conn.execute(f"CREATE DATABASE {db}")
        yield f"postgresql://{owner}:owner-password-123@127.0.0.1:{server.port}/{db}"
    finally:
        server.cleanup()


def test_a_non_superuser_owner_runs_a_hub_two_devices_sync(tmp_path, managed):
    init = _shoal("hub", "init", "--url", managed)
    assert init.returncode == 0, init.stderr
    assert _shoal("hub", "init", "--url", managed).returncode == 0  # idempotent
    devices = {}
    for name in ("phone", "tablet"):
        out = _shoal("hub", "add-device", name, "--url", managed, "--json")
        assert out.returncode == 0, out.stderr
        login = json.loads(out.stdout)
        home = tmp_path / name
        home.mkdir()
        pw = home / "hub-password"
        pw.write_text(login["password"])
        pw.chmod(0o600)
        config = home / "config.yaml"  # the setup add-device prints, by hand
        config.write_text(yaml.safe_dump({
            "device": {"name": name}, "state_dir": str(home / "state"),
            "hub": {"url": login["url"], "password_file": str(pw)},
            "folders": [{"id": "docs", "path": str(home / "docs")}]}))
        config.chmod(0o600)
        devices[name] = (home, config)
    for home, _config in devices.values():
        (home / "docs").mkdir()
    (devices["phone"][0] / "docs" / "a.txt").write_text("from the phone")
    (devices["tablet"][0] / "docs" / "b.txt").write_text("from the tablet")
    for _ in range(2):
        for name, (_home, config) in devices.items():
            sync = _shoal("sync", "--now", config=config)
            assert sync.returncode == 0, (name, sync.stderr)
    for home, _config in devices.values():
        assert (home / "docs" / "a.txt").read_text() == "from the phone"
        assert (home / "docs" / "b.txt").read_text() == "from the tablet"
    revoked = _shoal("hub", "revoke-device", "tablet", "--url", managed)
    assert revoked.returncode == 0, revoked.stderr
    assert _shoal("sync", "--now", config=devices["tablet"][1]).returncode == 1
