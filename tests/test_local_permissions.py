"""Another local user vs this device's state (issue 9, item 14).

The state dir is 0700 and the store (with its -wal and -shm) 0600, also when they existed
looser before; the embedded hub's socket sits in a directory only we can reach, its
authentication is never `trust`, and a short socket directory that someone else made first is
refused. The tests run as root, so they check modes and owners, never EACCES.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shoal.errors import ShoalError
from shoal.hub import embedded

CLOSED_PORT_URL = "postgresql://nobody@127.0.0.1:1/x?connect_timeout=1"


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _shoal(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shoal", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=timeout)


def _config(tmp_path: Path, state: Path, hub: str = CLOSED_PORT_URL) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"device": {"name": "laptop"}, "state_dir": str(state),
                                    "hub": {"url": hub},
                                    "folders": [{"id": "docs", "path": str(tmp_path / "docs")}]}))
    path.chmod(0o600)
    return path


def _store_files(state: Path) -> list[Path]:
    return [p for p in (state / "shoal.db", state / "shoal.db-wal", state / "shoal.db-shm") if p.exists()]


def test_init_makes_state_dir_0700_and_store_0600(tmp_path):
    state = tmp_path / "deep" / "state"
    config = tmp_path / "c" / "config.yaml"
    os.umask(old := os.umask(0o022))  # the usual umask: files 0644, directories 0755 unless we say
    proc = subprocess.run([sys.executable, "-m", "shoal", "--config", str(config), "init",
                           "--device-name", "laptop", "--hub", CLOSED_PORT_URL,
                           "--folder", f"docs={tmp_path / 'docs'}"],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")},
                          preexec_fn=lambda: os.umask(0o022))
    assert proc.returncode == 0, proc.stderr
    state = tmp_path / "data" / "shoal"  # the default state dir under XDG_DATA_HOME
    assert _mode(state) == 0o700
    assert _mode(state / "shoal.db") == 0o600
    for f in _store_files(state):
        assert _mode(f) == 0o600, f


def test_scan_tightens_a_loose_state_dir_and_store(tmp_path):
    state = tmp_path / "state"
    config = _config(tmp_path, state)
    assert _shoal(config, "scan").returncode == 0
    state.chmod(0o755)
    for f in _store_files(state):
        f.chmod(0o644)
    proc = _shoal(config, "scan")
    assert proc.returncode == 0, proc.stderr
    assert _mode(state) == 0o700
    assert _store_files(state)
    for f in _store_files(state):
        assert _mode(f) == 0o600, f


# -- the short socket directory of the PATH-based embedded hub ---------------------------------

def _long_pgdata(tmp_path: Path) -> Path:
    pgdata = tmp_path / ("x" * 60) / ("y" * 60) / "hub"
    assert len(str(pgdata / ".s.PGSQL.5432")) >= 100
    return pgdata


def test_short_socket_dir_is_made_fresh_0700_and_ours(tmp_path):
    pgdata = _long_pgdata(tmp_path)
    sock = embedded._socket_dir(pgdata)
    try:
        assert sock != pgdata and len(str(sock / ".s.PGSQL.5432")) < 100
        info = os.lstat(sock)
        assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
        assert _mode(sock) == 0o700
        assert embedded._socket_dir(pgdata) == sock  # ours already: taken again
    finally:
        sock.rmdir()


def test_precreated_world_writable_short_socket_dir_is_refused(tmp_path):
    pgdata = _long_pgdata(tmp_path)
    sock = embedded._short_socket_dir(pgdata)
    sock.mkdir(mode=0o777)
    sock.chmod(0o1777)  # as another user would leave it for us in /tmp
    try:
        with pytest.raises(ShoalError) as e:
            embedded._socket_dir(pgdata)
        assert str(sock) in str(e.value) and "1777" in str(e.value) and "rm -r" in str(e.value)
        assert _mode(sock) == 0o1777  # left as it was: not ours to repair
    finally:
        sock.rmdir()


def test_short_socket_dir_of_another_user_is_refused(tmp_path):
    pgdata = _long_pgdata(tmp_path)
    sock = embedded._short_socket_dir(pgdata)
    sock.mkdir(mode=0o700)
    os.chown(sock, 65534, 65534)  # nobody
    try:
        with pytest.raises(ShoalError) as e:
            embedded._socket_dir(pgdata)
        assert str(sock) in str(e.value) and "owned by" in str(e.value)
    finally:
        sock.rmdir()


def test_short_socket_dir_that_is_a_symlink_is_refused(tmp_path):
    pgdata = _long_pgdata(tmp_path)
    sock = embedded._short_socket_dir(pgdata)
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    sock.symlink_to(target)
    try:
        with pytest.raises(ShoalError):
            embedded._socket_dir(pgdata)
    finally:
        sock.unlink()


def test_path_server_is_initialised_without_trust(tmp_path):
    """The PATH-based server (Termux) gets peer authentication for the owner on its private
    socket, password (SCRAM) for anyone else, and nothing over TCP."""
    pgdata = tmp_path / "hub"
    pgdata.mkdir(mode=0o700)
    (pgdata / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
    embedded._write_auth_config(pgdata, "u0_a123")
    hba = (pgdata / "pg_hba.conf").read_text()
    rules = [line.split() for line in hba.splitlines() if line.strip() and not line.startswith("#")]
    assert rules and all("trust" not in rule for rule in rules)
    assert ["local", "all", "postgres", "peer", "map=shoal"] in rules
    assert all(rule[0] == "local" for rule in rules)
    ident = (pgdata / "pg_ident.conf").read_text()
    assert ["shoal", "u0_a123", "postgres"] in [line.split() for line in ident.splitlines()]
    assert "trust" not in " ".join(embedded.initdb_args(pgdata))
    assert _mode(pgdata / "pg_hba.conf") == 0o600


# -- the embedded hub from the wheel, through the CLI -------------------------------------------

@pytest.mark.parametrize("long_path", [False, True], ids=["short-state-dir", "long-state-dir"])
def test_embedded_hub_is_private(tmp_path, long_path):
    from shoal.app import LocalDevice
    from shoal.config import load_config

    state = (tmp_path / ("s" * 50) / ("t" * 50) / "state") if long_path else tmp_path / "state"
    state.parent.mkdir(parents=True, exist_ok=True)
    config = _config(tmp_path, state, hub="embedded")
    proc = _shoal(config, "sync", "--now")  # starts, uses and stops the embedded hub
    assert proc.returncode == 0, proc.stderr
    device = LocalDevice(load_config(config))
    try:
        device.hub_url()  # the same start, in this process, to look at the running server
        hba = (state / "hub" / "pg_hba.conf").read_text()
        rules = [line.split() for line in hba.splitlines() if line.strip() and not line.startswith("#")]
        assert rules and not any("trust" in rule for rule in rules), hba
        pid_lines = (state / "hub" / "postmaster.pid").read_text().splitlines()
        sock = Path(pid_lines[4])  # the socket directory the server uses
        assert (sock / ".s.PGSQL.5432").exists()
        assert (sock == state / "hub") != long_path
        assert _mode(sock) & 0o077 == 0, oct(_mode(sock))
        assert _mode(state) & 0o066 == 0, oct(_mode(state))  # 0700 (0711 when root runs the wheel)
        for f in _store_files(state):
            assert _mode(f) == 0o600, f
        hub = device.open_hub()  # peer authentication lets the hub's owner in
        hub.close()
    finally:
        device.close()
        embedded.stop_embedded_hubs()
