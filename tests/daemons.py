"""Real `shoal run` daemons as subprocesses, each with its own config file and state dir.

By default a daemon connects with its own device login from `shoal hub add-device` (URL over
TCP and a 0600 password_file in its config); `owner=True` connects as the hub's owner. With a
`passphrase`, its folders are end-to-end encrypted (`encryption: passphrase_file:`, a 0600 file)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.devices import hub_config
from tests.fixtures.hubs import TestHub


def shoal(config: Path, *args: str, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess:
    """Run the CLI as a user would (a new process)."""
    proc = subprocess.run([sys.executable, "-m", "shoal", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"shoal {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def content(path: Path) -> bytes | None:
    """A file's bytes, or None while it is not (fully) there."""
    try:
        return path.read_bytes()
    except OSError:
        return None


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class DaemonDevice:
    def __init__(self, base: Path, name: str, hub: TestHub | str, folders: dict[str, str] | None = None,
                 debounce: str = "200ms", interval: str = "5m", *, owner: bool = False,
                 space: str | None = None, host: str | None = None, port: int | None = None,
                 passphrase: str | None = None, watch: bool = True):
        self.name = name
        self.watch = watch
        self.base = base / name
        self.base.mkdir(parents=True)
        self.passphrase_file: Path | None = None
        if passphrase is not None:
            self.passphrase_file = self.base / "passphrase"
            self.passphrase_file.write_text(passphrase + "\n")
            self.passphrase_file.chmod(0o600)
        self.state = self.base / "state"
        self.config = self.base / "config.yaml"
        self.folders = folders or {"docs": str(self.base / "docs")}
        self.hub_config, self.login = hub_config(hub, name, owner=owner, space=space, host=host, port=port)
        self.hub_url = self.hub_config.url
        self.debounce = debounce
        self.interval = interval
        self.proc: subprocess.Popen | None = None
        self.write_config()

    @property
    def root(self) -> Path:
        return Path(self.folders["docs"])

    def config_dict(self) -> dict:
        return {"device": {"name": self.name}, "state_dir": str(self.state),
                "hub": self.hub_dict(),
                "folders": [self.folder_dict(fid, p) for fid, p in self.folders.items()],
                "sync": {"debounce": self.debounce, "interval": self.interval}}

    def folder_dict(self, folder_id: str, path: str) -> dict:
        d = {"id": folder_id, "path": path}
        if not self.watch:
            d["watch"] = False
        if self.passphrase_file is not None:  # every folder of the device, with the one passphrase
            d["encryption"] = {"passphrase_file": str(self.passphrase_file)}
        return d

    def hub_dict(self) -> dict:
        d = {"url": self.hub_url}
        if self.hub_config.password_file is not None:
            d["password_file"] = str(self.hub_config.password_file)
        return d

    def write_config(self, text: str | None = None) -> None:
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(text if text is not None else yaml.safe_dump(self.config_dict()))
        os.replace(tmp, self.config)

    def start(self, wait: bool = True) -> None:
        log = open(self.base / "daemon.out", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "shoal", "--config", str(self.config), "run"],
                                     stdout=log, stderr=subprocess.STDOUT)
        if wait:
            wait_for(lambda: self.status().get("daemon", {}).get("running"), what=f"{self.name} daemon to start")

    def status(self) -> dict:
        proc = shoal(self.config, "status", "--json")
        try:
            return json.loads(proc.stdout)
        except ValueError:
            return {}

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.proc = None

    def log_text(self) -> str:
        p = self.state / "logs" / "shoal.log"
        return p.read_text() if p.exists() else ""
