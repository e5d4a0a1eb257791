"""The daemon's control socket: a Unix socket in the state dir, mode 0600, JSON lines.

Requests: {"op": "status"}, {"op": "sync-now", "folder": ID|null, "allow_mass_delete": bool},
{"op": "pause", "folder": ID|null, "until": epoch|null}, {"op": "resume", "folder": ID|null}
(the user's pause: syncing held back, watching and indexing go on; kept in the state dir, see
app.pause_or_resume). A reply is one JSON line; `sync-now` first streams
{"progress": ...} lines, then {"ok": ..., "report": ..., "error": ...}.
The server refuses to replace a path that is not a socket.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import yaml

from shoal.errors import ShoalError
from shoal.platform import short_temp_path, socket_path_fits

SOCKET_NAME = "control.sock"


def socket_path(state_dir: Path) -> Path:
    """Where the control socket of a state dir lives (a short path if the natural one is too long)."""
    natural = Path(state_dir) / SOCKET_NAME
    if socket_path_fits(natural):
        return natural
    digest = hashlib.sha256(os.fsencode(str(Path(state_dir).resolve()))).hexdigest()[:16]
    return short_temp_path(f"shoal-{digest}.sock")


def state_dir_of(config_path: Path) -> Path:
    """The state dir a config file names, even when the file is otherwise invalid."""
    from shoal.config import default_state_dir, load_config

    try:
        return load_config(config_path).state_dir
    except ShoalError:
        pass
    try:
        raw = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
        if isinstance(raw, dict) and isinstance(raw.get("state_dir"), str):
            p = Path(os.path.expanduser(raw["state_dir"]))
            return p if p.is_absolute() else Path(config_path).parent / p
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        pass
    return default_state_dir()


class ControlServer:
    """Serves requests on the socket, each in its own thread, via `handler(request, send)`."""

    def __init__(self, path: Path, handler: Callable[[dict, Callable[[dict], None]], dict]):
        self.path = Path(path)
        self.handler = handler
        self.sock: socket.socket | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            st = None
        if st is not None:
            if not stat.S_ISSOCK(st.st_mode):
                raise ShoalError(f"{self.path} exists and is not a socket; refusing to replace it")
            os.unlink(self.path)  # a stale socket of a daemon that died (we hold the lock)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        sock.listen(16)
        self.sock = sock
        self.thread = threading.Thread(target=self._serve, name="shoal-control", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None
                try:
                    if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                        os.unlink(self.path)
                except OSError:
                    pass

    def _serve(self) -> None:
        while self.sock is not None:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        with conn:
            f = conn.makefile("rwb")

            def send(msg: dict) -> None:
                f.write(json.dumps(msg, default=str).encode() + b"\n")
                f.flush()

            try:
                line = f.readline()
                request = json.loads(line) if line else {}
                if not isinstance(request, dict):
                    raise ValueError("a request is a JSON object")
                send(self.handler(request, send))
            except (ValueError, OSError) as e:
                try:
                    send({"ok": False, "error": f"bad request: {e}"})
                except OSError:
                    pass


class DaemonClient:
    """Talks to a running daemon over its control socket."""

    def __init__(self, path: Path):
        self.path = path

    def _open(self, timeout: float | None) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(str(self.path))
        return s

    def request(self, msg: dict, timeout: float | None = 30.0,
                on_progress: Callable[[dict], None] | None = None) -> dict:
        """Send one request and return the final reply. Raises ShoalError if the daemon goes away."""
        try:
            with self._open(timeout) as s:
                f = s.makefile("rwb")
                f.write(json.dumps(msg).encode() + b"\n")
                f.flush()
                while True:
                    line = f.readline()
                    if not line:
                        raise ShoalError("the daemon closed the control connection")
                    reply = json.loads(line)
                    if "progress" in reply:
                        if on_progress:
                            on_progress(reply["progress"])
                        continue
                    return reply
        except OSError as e:
            raise ShoalError(f"cannot talk to the daemon at {self.path}: {e.strerror or e}") from e

    def sync_now(self, folder: str | None, allow_mass_delete: bool) -> int:
        """`shoal sync --now` through the daemon: shows its progress, returns the exit code."""
        from shoal.progress import TerminalProgressBar

        with TerminalProgressBar("sync (daemon)") as progress:
            def on_progress(p: dict) -> None:
                if p.get("phase"):
                    progress.phase(p.get("folder", ""), p["phase"], p.get("total_files", 0))
                else:
                    progress.advance(p.get("files", 0), p.get("bytes", 0))

            reply = self.request({"op": "sync-now", "folder": folder, "allow_mass_delete": allow_mass_delete},
                                 timeout=None, on_progress=on_progress)
        for line in reply.get("lines", []):
            print(line)
        if not reply.get("ok"):
            print(f"shoal: {reply.get('error') or 'the sync did not complete'}", file=sys.stderr)
            return int(reply.get("exit_code", 1))
        return 0


def daemon_client(config_path: Path) -> DaemonClient | None:
    """A client for the daemon of this config's state dir, or None if none is running."""
    path = socket_path(state_dir_of(config_path))
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            return None
    except OSError:
        return None
    client = DaemonClient(path)
    try:
        client._open(2.0).close()
    except OSError:
        return None  # a stale socket: no daemon behind it
    return client
