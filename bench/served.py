"""A served embedded hub and devices that join it, as a user sets them up (issue 10): device A
runs `shoal run` owning the embedded hub with `hub.serve.listen` on 127.0.0.1 (the daemon's TLS
front, hub/front.py, in front of the embedded PostgreSQL); device B gets an invite from
`shoal hub add-device NAME --json` on A and is set up only with
`shoal join TOKEN --folder ID=PATH` in a HOME of its own (platformdirs puts its config and
state under it). Used by front_pull and latency_tls.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

from bench.daemon import DaemonProc
from bench.processes import check, child_env, run_child, shoal_cmd
from bench.report import log

FOLDER_ID = "docs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServedOwner(DaemonProc):
    """Device A: a `shoal run` daemon that owns the embedded hub (in its state dir) and serves
    it on 127.0.0.1:<free port> through the TLS front."""

    def __init__(self, base: Path, name: str, folder: Path, *, debounce: str = "200ms", interval: str = "5m"):
        super().__init__(base, name, "embedded", folder, debounce=debounce, interval=interval)
        self.port = free_port()
        self.listen = f"127.0.0.1:{self.port}"
        lines = [f"device: {{name: {name}}}", f"state_dir: {json.dumps(str(self.state))}",
                 f"hub: {{url: embedded, serve: {{listen: {json.dumps(self.listen)}}}}}",
                 f"folders: [{{id: {FOLDER_ID}, path: {json.dumps(str(folder))}}}]",
                 f"sync: {{debounce: {debounce}, interval: {interval}}}", "log: {level: warning}"]
        self.config.write_text("\n".join(lines) + "\n")

    def shoal(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(shoal_cmd() + list(args), capture_output=True, text=True, timeout=timeout,
                              env=self.env, stdin=subprocess.DEVNULL)

    def wait_serving(self, timeout: float = 60) -> None:
        """Until the TLS front accepts connections on its port."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.base.name}: the TLS front did not come up on {self.listen} within {timeout}s")

    def invite(self, name: str) -> str:
        out = self.shoal("hub", "add-device", name, "--json")
        if out.returncode != 0:
            raise RuntimeError(f"shoal hub add-device {name} exited {out.returncode}: {out.stderr[-1000:]}")
        return json.loads(out.stdout)["invite"]

    def postmaster(self) -> tuple[int, Path, int]:
        """(pid, socket dir, port) of the running embedded PostgreSQL, from its postmaster.pid."""
        lines = (self.state / "hub" / "postmaster.pid").read_text().splitlines()
        return int(lines[0]), Path(lines[4].strip() or self.state / "hub"), int(lines[3])

    def owner_conninfo(self) -> str:
        """The hub owner's conninfo over the embedded server's Unix socket (peer authentication
        of this OS user as `postgres`), as hub/embedded.py's start_embedded_hub returns it."""
        from psycopg.conninfo import make_conninfo

        from shoal.hub.embedded import HUB_DB

        _pid, sock, port = self.postmaster()
        return make_conninfo(host=str(sock), port=str(port), user="postgres", dbname=HUB_DB)


def home_env(home: Path) -> dict[str, str]:
    """The environment of a machine with its own HOME: no XDG_* or SHOAL_* of ours, so platformdirs
    puts the config and state under that HOME (as tests/test_join_e2e.py does)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "SHOAL_"))}
    env["HOME"] = str(home)
    return env


class JoinedDevice(DaemonProc):
    """Device B: a HOME of its own, set up only with `shoal join TOKEN --folder docs=PATH`; it
    reaches the hub through A's TLS front (sslmode=verify-ca, its own device login).
    `sync_now()` runs one `shoal sync --now`; `start()` runs `shoal run`."""

    def __init__(self, base: Path, name: str, owner: ServedOwner, *, debounce: str | None = None):
        # Not DaemonProc.__init__: this device's config is written by `shoal join`, not by us.
        self.base = base / name
        self.home = self.base / "home"
        self.home.mkdir(parents=True)
        self.folder = self.base / "folder"
        self.env = home_env(self.home)
        self.proc = None
        self.log = self.base / "daemon.out"
        token = owner.invite(name)
        joined = run_child(shoal_cmd() + ["join", token, "--folder", f"{FOLDER_ID}={self.folder}",
                                          "--device-name", name], self.env, timeout=180)
        check(joined, f"{name}: shoal join")
        st = json.loads(check(run_child(shoal_cmd() + ["status", "--json"], self.env, timeout=120),
                              f"{name}: shoal status --json").stdout)
        self.config = Path(st["config"])
        self.state = Path(st["state_dir"])
        if "sslmode=verify-ca" not in self.config.read_text():
            raise RuntimeError(f"{name}: the joined config does not use TLS (sslmode=verify-ca): {self.config}")
        if debounce:
            import yaml

            doc = yaml.safe_load(self.config.read_text()) or {}
            doc["sync"] = {**(doc.get("sync") or {}), "debounce": debounce}
            doc["log"] = {"level": "warning"}  # as the daemons of bench/latency.py
            self.config.write_text(yaml.safe_dump(doc, sort_keys=False))
        log(f"{name}: joined through the TLS front ({owner.listen})")

    def sync_now(self):
        return run_child(shoal_cmd() + ["sync", "--now"], self.env)


def socket_device_env(base: Path, name: str, owner: ServedOwner, folder: Path) -> dict[str, str]:
    """A device on A's machine configured with the embedded hub's Unix socket, as the owner
    (a second device may share the owner's URL: devices are told apart by their store's
    device id). Returns the environment to run `shoal` in for it."""
    from bench.fixtures import write_config

    d = base / name
    d.mkdir(parents=True)
    cfg = write_config(d / "config.yaml", name=name, state=d / "state", hub=owner.owner_conninfo(), folder=folder,
                       folder_id=FOLDER_ID)
    return child_env(cfg)
