"""The control socket's safety (0600, never replaces a non-socket path) and the trash purge."""

from __future__ import annotations

import json
import os
import socket
import stat

import pytest

from shoal.daemon.control import ControlServer, DaemonClient, socket_path
from shoal.errors import ShoalError
from shoal.sync.folder_io import purge_trash


def test_control_socket_is_0600_and_answers(tmp_path):
    path = socket_path(tmp_path)
    server = ControlServer(path, lambda req, send: {"ok": True, "echo": req.get("op")})
    server.start()
    try:
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
        assert DaemonClient(path).request({"op": "status"}) == {"ok": True, "echo": "status"}
        with socket.socket(socket.AF_UNIX) as s:  # garbage in: one error line back, server lives on
            s.connect(str(path))
            s.sendall(b"not json\n")
            reply = json.loads(s.makefile("rb").readline())
        assert reply["ok"] is False and "bad request" in reply["error"]
        assert DaemonClient(path).request({"op": "x"})["echo"] == "x"
    finally:
        server.stop()
    assert not path.exists()


def test_control_socket_refuses_to_replace_a_file(tmp_path):
    path = socket_path(tmp_path)
    path.write_text("precious")
    with pytest.raises(ShoalError, match="not a socket"):
        ControlServer(path, lambda req, send: {}).start()
    assert path.read_text() == "precious"


def test_a_long_state_dir_gets_a_short_socket_path(tmp_path):
    deep = tmp_path / ("d" * 120)
    assert len(str(socket_path(deep))) < 108 and socket_path(deep) != deep / "control.sock"


def test_trash_older_than_trash_days_is_purged(tmp_path):
    import calendar
    import time

    trash = tmp_path / ".shoal" / "trash" / "sub"
    trash.mkdir(parents=True)
    old = trash / "a.txt~20200101-000000"
    new = trash / "b.txt~20991231-235959"
    odd = trash / "no-stamp.txt"
    for p in (old, new, odd):
        p.write_text("x")
    cutoff = calendar.timegm(time.strptime("2024-01-01", "%Y-%m-%d"))
    assert purge_trash(tmp_path, cutoff) == 1
    assert not old.exists() and new.exists() and odd.exists()
