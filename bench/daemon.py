"""A `shoal run` daemon as a subprocess (its own config and state dir), watched through its store
rather than `shoal status`, so that nothing is asked of the daemon while it is measured.
Used by latency, latency_big and idle_cpu.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

from bench.fixtures import write_config
from bench.processes import child_env, shoal_cmd
from bench.report import RESULTS_DIR


class DaemonProc:
    """A `shoal run` daemon as a subprocess, with its own config and state dir.

    `state` (its state dir) and `env` (the environment it runs in) are set here from the
    config this writes; bench/served.py sets them otherwise for a device set up by `shoal join`."""

    def __init__(self, base: Path, name: str, hub: str, folder: Path, *, debounce: str = "200ms",
                 interval: str = "5m"):
        self.base = base / name
        self.base.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.config = write_config(self.base / "config.yaml", name=name, state=self.base / "state", hub=hub,
                                   folder=folder, debounce=debounce, interval=interval)
        self.state = self.base / "state"
        self.env = child_env(self.config)
        self.proc: subprocess.Popen | None = None
        self.log = self.base / "daemon.out"

    def start(self, timeout: float = 60) -> None:
        from shoal.daemon.control import socket_path

        sock = socket_path(self.state)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(shoal_cmd() + ["run"], env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if sock.exists():  # its control socket is up
                return
            time.sleep(0.1)
        raise RuntimeError(f"daemon did not start within {timeout}s")

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            kept = RESULTS_DIR / f"daemon-{self.base.parent.name}-{self.base.name}.log"
            shutil.copyfile(self.log, kept)  # the temp dir goes away: keep the log for diagnosis
            raise RuntimeError(f"daemon {self.base.name} exited {self.proc.returncode} (log: {kept}): "
                               f"{self.log.read_text()[-600:]}")

    def store_state(self) -> dict:
        """Read the daemon's store directly (read-only, WAL): no request to the daemon, so
        nothing is added to what is measured (and `shoal status` during a cycle is avoided)."""
        import sqlite3

        db = self.state / "shoal.db"
        if not db.exists():
            return {}
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            files = conn.execute("SELECT count(*) FROM files WHERE deleted=0").fetchone()[0]
            pending = conn.execute("SELECT count(*) FROM outbox WHERE state='pending'").fetchone()[0]
            run = conn.execute("SELECT status FROM sync_runs ORDER BY id DESC LIMIT 1").fetchone()
            synced = conn.execute("SELECT count(*) FROM folders WHERE last_sync_at IS NOT NULL").fetchone()[0]
        except sqlite3.Error as e:
            return {"error": str(e)}
        finally:
            conn.close()
        return {"files": files, "pending": pending, "run": run[0] if run else None, "synced": synced}

    def wait_settled(self, files: int, timeout: float) -> dict:
        """Until the folder is indexed (`files` live files), nothing waits to be pushed and the
        last cycle finished ok -- twice in a row, a second apart."""
        deadline = time.monotonic() + timeout
        st: dict = {}
        good = 0
        while time.monotonic() < deadline:
            self._check_alive()
            st = self.store_state()
            ok = (st.get("files") == files and st.get("pending") == 0 and st.get("run") == "ok"
                  and st.get("synced"))
            good = good + 1 if ok else 0
            if good >= 2:
                return st
            time.sleep(1.0)
        raise RuntimeError(f"daemon did not settle within {timeout}s: {st}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
