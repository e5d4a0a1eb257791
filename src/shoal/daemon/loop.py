"""`shoal run`: the daemon loop — timers, watcher hints, hub notifications, backoff, signals,
the one-daemon-per-state-dir lock, live config reload and the control socket.
"""

from __future__ import annotations

import fcntl
import logging
import os
import posixpath
import random
import signal
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from shoal.app import (LocalDevice, load_or_create_config, pause_holds, pause_or_resume, raise_if_held,
                       read_pauses, setup_logging, status_report)
from shoal.localstore import Store
from shoal.config import Config, load_config
from shoal.core.backoff import backoff_delay
from shoal.core.conditions import Reading, Verdict, evaluate, needed_readings
from shoal.core.debounce import Debouncer
from shoal.core.durations import format_duration
from shoal.daemon.conditions import ConditionProbe
from shoal.daemon.control import ControlServer, socket_path
from shoal.daemon.kept_hub import KeptHub
from shoal.daemon.watcher import FolderWatcher
from shoal.errors import AlreadyRunning, ConfigError, FolderPaused, HubUnreachable, ShoalError
from shoal.progress import ProgressSink
from shoal.sync.engine import SyncEngine, raise_if_paused

log = logging.getLogger("shoal.daemon")
NOTIFY_MIN_GAP = 0.5  # seconds between cycles woken by hub notifications
REAP_INTERVAL = 30.0
DEVICE_SESSION_LIMITS = ("60 seconds", "5 minutes")  # idle in a transaction, one statement
LOCK_NAME = "daemon.lock"
CONFIG_POLL = 1.0
BACKOFF_CAP = 300.0
GC_FIRST = 60.0  # the daemon that owns an embedded hub collects its garbage this long after start,
GC_INTERVAL = 86400.0  # then daily (an hour after a failure)


class Cancelled(BaseException):
    """The daemon is stopping: the cycle in progress is abandoned (temp files stay for resume)."""


class _ProgressRelay(ProgressSink):
    """The daemon's progress sink: relays a cycle's progress to the control-socket clients
    waiting on it (`shoal sync --now`), and abandons the cycle (Cancelled) once the daemon stops."""

    def __init__(self, daemon: Daemon):
        self.daemon = daemon
        self.listeners: list = []

    def _check(self) -> None:
        if self.daemon.stopping.is_set():
            raise Cancelled()

    def phase(self, folder_id, phase, total_files=0, total_bytes=0):
        self._check()
        for send in list(self.listeners):
            send({"progress": {"folder": folder_id, "phase": phase, "total_files": total_files,
                               "total_bytes": total_bytes}})

    def advance(self, files=0, nbytes=0, path=None):
        self._check()
        for send in list(self.listeners):
            send({"progress": {"files": files, "bytes": nbytes}})


MAX_PARTS = 64  # more dirty directories in one folder than this: rescan the whole folder


class DirtyDir(NamedTuple):
    """A debouncer key: where the watcher saw events. `recursive`: the whole directory tree
    (it appeared or went away), else only the directory's own files."""

    folder_id: str
    reldir: str
    recursive: bool


def _parts(dirty: list[DirtyDir]) -> dict[str, list[tuple[str, bool]] | None]:
    """Debounced event keys -> per folder, the (directory, recursive) parts to rescan
    (None: the whole folder)."""
    parts: dict[str, list[tuple[str, bool]] | None] = {}
    for folder_id, reldir, recursive in dirty:
        have = parts.setdefault(folder_id, [])
        if have is not None:
            have.append((reldir, recursive))
            if len(have) > MAX_PARTS:
                parts[folder_id] = None
    return parts


def acquire_lock(state_dir: Path):
    """Hold the state dir's daemon lock for the life of the process. Raises AlreadyRunning."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise AlreadyRunning(f"a shoal daemon (pid {pid}) is already running for {state_dir}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class Daemon:
    def __init__(self, config_path: Path, config: Config):
        self.config_path = config_path
        self.config = config
        self.config_error: list[str] | None = None
        self._config_stamp = self._stamp()
        self.device = LocalDevice(config)
        self.sink = _ProgressRelay(self)
        self.kept_hub = KeptHub(self.device.open_hub)  # one connection from cycle to cycle
        self.engine = self._engine(config)
        self.device_id = self.device.store.device_id  # for the listener thread (the store is not its)
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.lock = threading.Lock()
        self.debouncer: Debouncer[DirtyDir] = Debouncer(config.sync.debounce)
        self.events_lock = threading.Lock()  # the watcher's threads mark, the main loop reads
        self.settled: set[tuple[str, str]] = set()  # (folder, path) of files closed after writing
        self.requests: list[tuple[dict, callable, threading.Event, dict]] = []
        self.holds: dict[str, str] = {}  # folder id -> why syncing is held back (pause, run condition)
        self.owed: set[str] = set()  # folders held back at their last cycle: synced once they are free
        self.probe = ConditionProbe()  # sync.when: Wi-Fi, charger, battery
        self.reading: Reading | None = None
        self.verdict: Verdict | None = None  # the run conditions' last verdict (None: none are set)
        self.verdict_at: float | None = None
        self.hub_ok: bool | None = None
        self.hub_error: str | None = None
        self.unreachable_since: float | None = None
        self.failures = 0
        self.next_cycle = 0.0  # run at once on start
        self.pull_wanted = False
        self.last_cycle = 0.0  # monotonic
        self.watcher = FolderWatcher(self._on_fs_event)
        self.listener: threading.Thread | None = None
        self.front = None  # hub.front.HubFront while serving the embedded hub
        self.front_check = None
        self.front_error: str | None = None
        self.control = ControlServer(socket_path(config.state_dir), self._handle)

    # -- lifecycle -----------------------------------------------------------------

    def _stamp(self):
        try:
            st = os.stat(self.config_path)
            return (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            return None

    def _engine(self, config: Config) -> SyncEngine:
        return SyncEngine(config, self.device.store, self.kept_hub.get, progress=self.sink,
                          release_hub=self.kept_hub.release)

    def stop(self, *_args) -> None:
        self.stopping.set()
        self.wake.set()

    def run(self) -> None:
        self.control.start()
        self.watcher.update(self.config.folders)
        self.listener = threading.Thread(target=self._listen_loop, name="shoal-listen", daemon=True)
        self.listener.start()
        if self.config.hub.url == "embedded" and self.config.hub.serve_listen:
            threading.Thread(target=self._serve_hub, name="shoal-serve", daemon=True).start()
        if self.config.hub.url == "embedded":
            threading.Thread(target=self._collect_garbage, name="shoal-gc", daemon=True).start()
        log.info("shoal daemon running (pid %d), %d folders, watcher: %s",
                 os.getpid(), len(self.config.folders), self.watcher.state)
        try:
            while not self.stopping.is_set():
                self._reload_config_if_changed()
                self._serve_requests()
                now = time.time()
                with self.events_lock:
                    dirty = self.debouncer.due(now)
                    # Files closed after writing are complete: their directories now, not after the
                    # debounce time (which a later event on the same directory would restart).
                    settled, self.settled = self.settled, set()
                dirty += [DirtyDir(fid, posixpath.dirname(path), False) for fid, path in settled]
                # Notifications wake at most one cycle per NOTIFY_MIN_GAP, however many arrive.
                pull_due = self.pull_wanted and time.monotonic() - self.last_cycle >= NOTIFY_MIN_GAP
                full_due = now >= self.next_cycle
                # Held folders (paused, waiting for a run condition) are scanned like the others
                # and synced once free; looked at again every time round (a pause ends, Wi-Fi
                # comes back).
                holds = self._current_holds(now, probe=bool(full_due or dirty or pull_due or self.owed))
                if full_due or dirty or pull_due or self.owed:
                    if full_due or dirty or pull_due:
                        # A full rescan when it is time; otherwise only where the watcher saw
                        # events (nothing at all when another device's push woke us).
                        self._cycle(only_scan=None if full_due else _parts(dirty), hold=holds, settled=settled)
                        if self.watcher.problems:
                            self.watcher.update(self.config.folders)  # a folder may exist now
                    elif self.owed - holds.keys():
                        self._cycle(only_scan={}, hold=holds)  # push and pull what waited
                timeout = min(CONFIG_POLL, max(0.0, self.next_cycle - time.time()))
                with self.events_lock:
                    deadline = self.debouncer.next_deadline()
                if deadline is not None:
                    timeout = min(timeout, max(0.0, deadline - time.time()))
                if self.pull_wanted:
                    timeout = min(timeout, max(0.0, self.last_cycle + NOTIFY_MIN_GAP - time.monotonic()))
                self.wake.wait(timeout)
                self.wake.clear()
        finally:
            self.watcher.stop()
            if self.front is not None:
                self.front.stop()
            if self.front_check is not None:
                self.front_check.close()
            self.control.stop()
            self.kept_hub.close()
            self.device.close()
            log.info("shoal daemon stopped")

    # -- cycles --------------------------------------------------------------------

    def _cycle(self, folder: str | None = None, allow_mass_delete: bool = False,
               requested: bool = False,
               only_scan: dict[str, list[tuple[str, bool]] | None] | None = None,
               hold: dict[str, str] | None = None,
               settled: set[tuple[str, str]] | None = None) -> tuple[bool, str | None, list]:
        """One cycle; returns (ok, error, report lines). Never raises (but Cancelled).
        `requested`: a user asked for it (`sync --now`), so failed writes are retried now, and
        only the user's pauses hold folders back (it overrides the run conditions). `hold`:
        folders only scanned, and why (see SyncEngine.cycle)."""
        if requested:
            hold = pause_holds(self.config, read_pauses(self.config.state_dir), time.time())
        self.pull_wanted = False
        self.last_cycle = time.monotonic()
        lines: list[str] = []
        try:
            with self.lock:
                # A user's `sync --now` takes files as they are now; the daemon on its own leaves
                # files changed within the debounce time for later (still being written).
                report = self.engine.cycle([folder] if folder else None, allow_mass_delete=allow_mass_delete,
                                           min_age=0.0 if requested else self.config.sync.debounce,
                                           retry_now=requested, only_scan=only_scan, hold=hold, settled=settled)
            held = {fr.folder_id for fr in report.folders if fr.held}
            self.owed = (self.owed - {fr.folder_id for fr in report.folders}) | held
            if not all(fr.paused or fr.held for fr in report.folders):  # else the hub was not asked
                self.hub_ok, self.hub_error, self.unreachable_since, self.failures = True, None, None, 0
            for fr in report.folders:
                if fr.scan and fr.scan.deferred:  # files still being written: look again soon
                    with self.events_lock:
                        self.debouncer.mark(DirtyDir(fr.folder_id, "", True), time.time())
            if only_scan is None:
                self.next_cycle = time.time() + self.config.sync.interval
            lines = report.summary_lines()
            raise_if_paused(report)
            if requested:
                raise_if_held(report)
            return True, None, lines
        except HubUnreachable as e:
            self.owed = set()  # the retry (next_cycle) syncs every folder that is free then
            self.failures += 1
            if self.hub_ok is not False:
                log.warning("%s; local changes wait in the outbox", e)
            self.hub_ok, self.hub_error = False, str(e)
            self.unreachable_since = self.unreachable_since or time.time()
            delay = backoff_delay(self.failures - 1, base=1.0, cap=BACKOFF_CAP, rand=random.random())
            self.next_cycle = time.time() + delay
            return False, str(e), lines
        except FolderPaused as e:
            log.warning("%s", e)
            return False, str(e), lines
        except Exception as e:  # noqa: BLE001 - a daemon reports and retries; it never dies of one cycle
            if isinstance(e, ShoalError):
                log.error("sync failed: %s", e)
            else:
                log.exception("sync failed unexpectedly")
            self.failures += 1
            delay = backoff_delay(self.failures - 1, cap=BACKOFF_CAP, rand=random.random())
            if not getattr(e, "retryable", False):
                # Retrying soon cannot help (the hub refused a request, the store failed, a bug):
                # not the fast backoff of an outage, at most once per normal interval.
                delay = max(delay, self.config.sync.interval)
            self.next_cycle = time.time() + delay
            return False, str(e), lines

    # -- events --------------------------------------------------------------------

    def _on_fs_event(self, folder_id: str, reldir: str, recursive: bool, settled: str | None) -> None:
        """A watcher event. A file closed after writing has settled: its directory is scanned at
        once and the file taken as it is; other events wait out the debounce time."""
        with self.events_lock:
            if settled is not None:
                self.settled.add((folder_id, settled))
            else:
                self.debouncer.mark(DirtyDir(folder_id, reldir, recursive), time.time())
        self.wake.set()

    def _listen_loop(self) -> None:
        """LISTEN on the hub; a notification means another device pushed: pull now."""
        from psycopg import sql

        from shoal.hub.client import Hub, connect

        attempt = 0
        while not self.stopping.is_set():
            try:
                conn = connect(self.device.hub_url(), self._password(), timeout=5)
            except ShoalError:
                attempt += 1
                self.stopping.wait(backoff_delay(attempt, cap=60.0, rand=random.random()))
                continue
            attempt = 0
            try:
                channel = Hub(conn, self.device_id, "").listen_channel()
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                # A push between this daemon's last pull and now sent a notification nobody was
                # listening for: pull once now that we listen (at start, and after a reconnect).
                self.pull_wanted = True
                self.wake.set()
                next_reap = 0.0
                while not self.stopping.is_set():
                    for _ in conn.notifies(timeout=1.0, stop_after=1):
                        self.pull_wanted = True
                        self.wake.set()
                    if self.config.hub.url == "embedded" and time.monotonic() >= next_reap:
                        # This daemon owns the hub: it enforces the device logins' time limits.
                        conn.execute("SELECT shoal.reap_device_sessions(%s, %s)", DEVICE_SESSION_LIMITS)
                        next_reap = time.monotonic() + REAP_INTERVAL
            except Exception as e:  # connection lost: reconnect with backoff
                log.debug("hub listener: %s", e)
                self.stopping.wait(1.0)
            finally:
                try:
                    conn.close()
                except Exception:
                    pass

    def _collect_garbage(self) -> None:
        """`shoal hub gc --keep hub.keep_versions` on the embedded hub this daemon owns, in its own
        connection and thread: its batches are short transactions, so syncing goes on meanwhile."""
        from shoal.hub.client import connect
        from shoal.hub.gc import collect_garbage

        delay = GC_FIRST
        while not self.stopping.wait(delay):
            delay = GC_INTERVAL
            try:
                conn = connect(self.device.hub_url(), self._password())
                try:
                    report = collect_garbage(conn, keep=self.config.hub.keep_versions,
                                             should_stop=self.stopping.is_set)
                finally:
                    conn.close()
                log.info("hub gc (keep %s): %s", format_duration(self.config.hub.keep_versions), report.summary())
            except Exception as e:  # noqa: BLE001 - reported; tried again in an hour
                log.warning("hub gc failed: %s", e)
                delay = 3600.0

    def _serve_hub(self) -> None:
        """Serve the embedded hub on hub.serve.listen through the TLS front (hub/front.py),
        once the hub is up; retried with backoff (the address may be busy for a while)."""
        import ssl

        from shoal.config import parse_listen
        from shoal.hub import embedded, front, tls

        listen = parse_listen(self.config.hub.serve_listen or "")
        if listen is None:
            return
        attempt = 0
        while not self.stopping.is_set():
            try:
                self.device.hub_url()  # starts the hub, also on 127.0.0.1 (app.LocalDevice.hub_url)
                upstream = embedded.loopback_address(self.config.state_dir)
                if upstream is None:
                    raise HubUnreachable("the embedded hub does not listen on 127.0.0.1; restart shoal")
                paths = tls.ensure_hub_tls(self.config.state_dir, (listen[0],))
                check = front.DeviceCheck(self.device.hub_url)
                state_dir = self.config.state_dir
                served = front.HubFront(listen, lambda: embedded.loopback_address(state_dir),
                                        str(paths.server_cert), str(paths.server_key),
                                        tls.load_ca_pem(self.config.state_dir), check)
                served.start()
            except (ShoalError, OSError, ssl.SSLError) as e:
                if self.front_error != str(e):
                    log.error("cannot serve the hub on %s: %s", self.config.hub.serve_listen, e)
                self.front_error = str(e)
                attempt += 1
                self.stopping.wait(backoff_delay(attempt, base=1.0, cap=60.0, rand=random.random()))
                continue
            if self.stopping.is_set():
                served.stop()
                check.close()
                return
            self.front, self.front_check, self.front_error = served, check, None
            log.info("hub CA fingerprint (SHA-256): %s",
                     tls.ca_fingerprint(tls.load_ca_pem(self.config.state_dir)))
            return

    def _password(self):
        from shoal.config import read_hub_password

        try:
            return read_hub_password(self.config.hub)
        except ConfigError:
            return None

    # -- config reload -------------------------------------------------------------

    def _reload_config_if_changed(self) -> None:
        stamp = self._stamp()
        if stamp == self._config_stamp:
            return
        self._config_stamp = stamp
        try:
            new = load_config(self.config_path)
        except ConfigError as e:
            self.config_error = e.problems
            log.error("config edit refused, running on the last good config:\n%s", "\n".join(e.problems))
            return
        self.config_error = None
        if new == self.config:
            return
        if new.state_dir != self.config.state_dir:
            log.warning("state_dir changed in the config: restart the daemon to use it")
        if new.hub.serve_listen != self.config.hub.serve_listen:
            log.warning("hub.serve.listen changed in the config: restart the daemon to use it")
        log.info("config reloaded: %d folders", len(new.folders))
        with self.lock:
            self.config = new
            for f in new.folders:
                self.device.store.ensure_folder(f.id, str(f.path))
            self.device.config = new
            self.kept_hub.close()  # the hub's URL or login may be another now
            self.engine = self._engine(new)
            with self.events_lock:
                self.debouncer = Debouncer(new.sync.debounce)
            logging.getLogger().setLevel(getattr(logging, new.log.level.upper(), logging.INFO))
        self.watcher.update(new.folders)
        self.next_cycle = 0.0

    # -- control requests ----------------------------------------------------------

    def _handle(self, request: dict, send) -> dict:
        op = request.get("op")
        if op == "status":
            try:
                return {"ok": True, "status": self.status()}
            except Exception as e:  # noqa: BLE001 - answer, never kill the control thread
                return {"ok": False, "error": f"status failed: {type(e).__name__}: {e}"}
        if op in ("pause", "resume"):
            return self._pause_or_resume(op, request)
        if op in ("sync-now", "restore"):
            done = threading.Event()
            result: dict = {}
            with self.lock:
                self.requests.append((request, send, done, result))
            self.wake.set()
            while not done.wait(0.5):
                if self.stopping.is_set():
                    return {"ok": False, "error": "the daemon is stopping", "exit_code": 1}
            return result
        return {"ok": False, "error": f"unknown op {op!r}"}

    def _pause_or_resume(self, op: str, request: dict) -> dict:
        """`shoal pause` / `shoal resume` asked of the daemon: {"folder": ID|null, "until": epoch|null}.
        Written to the state dir's pause file (so it outlives the daemon); takes effect now."""
        folder = request.get("folder")
        if folder is not None and self.config.folder(folder) is None:
            return {"ok": False, "error": f"no folder with id {folder!r} in {self.config_path}", "exit_code": 2}
        until = request.get("until")
        if until is not None and (isinstance(until, bool) or not isinstance(until, (int, float))):
            return {"ok": False, "error": "until: must be a time (epoch seconds)", "exit_code": 2}
        try:
            pauses = pause_or_resume(self.config.state_dir, op, folder, until)
        except OSError as e:
            return {"ok": False, "error": f"cannot write the pause state: {e}", "exit_code": 1}
        log.info("%s %s over the control socket", "folder " + folder if folder else "the whole device",
                 "paused" + (time.strftime(" until %Y-%m-%dT%H:%M:%SZ", time.gmtime(until)) if until else "")
                 if op == "pause" else "resumed")
        self.wake.set()
        return {"ok": True, "pauses": pauses.to_json()}

    def _current_holds(self, now: float, probe: bool = True) -> dict[str, str]:
        """Which folders are held back now and why: the user's pauses (the state dir's pause
        file, read every time: a `shoal pause` without the daemon, an expiry) and the run
        conditions (read only with `probe`: when there is something to sync; else the last
        verdict stands). Kept for `shoal status`."""
        holds = pause_holds(self.config, read_pauses(self.config.state_dir), now)
        conds = self.config.sync.when
        if not conds.any:
            self.verdict = self.reading = self.verdict_at = None
        else:
            if probe or self.reading is None:
                self.reading = self.probe.read(needed_readings(conds), time.monotonic())
                self.verdict_at = now
            verdict = evaluate(conds, self.reading, datetime.now().time())
            if self.verdict is None or verdict.waiting_for != self.verdict.waiting_for:
                log.info("run conditions: %s", verdict.text() + "; indexing goes on" if verdict.waiting_for
                         else "met, syncing")
            self.verdict = verdict
            if not verdict.may_sync:
                for f in self.config.folders:
                    holds.setdefault(f.id, f"{verdict.text()} (sync.when); `shoal sync --now` syncs anyway")
        self.holds = holds
        return holds

    def _serve_requests(self) -> None:
        with self.lock:
            pending, self.requests = self.requests, []
        for request, send, done, result in pending:
            log.info("%s requested over the control socket", "restore" if request.get("op") == "restore" else "sync")
            self.sink.listeners.append(send)
            try:
                if request.get("op") == "restore":
                    result.update(self._restore(request))
                    continue
                folder = request.get("folder")
                if folder and self.config.folder(folder) is None:
                    result.update(ok=False, error=f"no folder with id {folder!r}", exit_code=2)
                    continue
                ok, error, lines = self._cycle(folder, bool(request.get("allow_mass_delete")), requested=True)
                result.update(ok=ok, error=error, lines=lines, exit_code=0 if ok else 1)
            except Exception as e:  # report, keep serving
                result.update(ok=False, error=f"{type(e).__name__}: {e}", exit_code=1)
            finally:
                if send in self.sink.listeners:
                    self.sink.listeners.remove(send)
                done.set()

    def _restore(self, request: dict) -> dict:
        """`shoal restore` / `shoal revert` asked of the daemon: run here, between cycles."""
        from datetime import datetime

        from shoal.sync.history import History

        def when(key: str):
            return datetime.fromisoformat(request[key]) if request.get(key) else None

        try:
            with self.lock:
                report = History(self.engine).restore(
                    request.get("folder_id"), path=request.get("path"), version=request.get("version"),
                    at=when("at"), device=request.get("device"), since=when("since"),
                    dry_run=bool(request.get("dry_run")))
        except ShoalError as e:
            return {"ok": False, "error": str(e), "exit_code": e.exit_code}
        return {"ok": True, "report": report.as_json()}

    def status(self) -> dict:
        reader = Store.reader(self.device.store.path)  # the cycle owns the device's connection
        try:
            report = status_report(self.device, check_hub=False, store=reader)
        finally:
            reader.close()
        report["hub"].update(
            reachable=self.hub_ok, error=self.hub_error,
            unreachable_since=(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.unreachable_since))
                               if self.unreachable_since else None))
        if "serve" in report["hub"]:
            report["hub"]["serve"].update(serving=self.front is not None, error=self.front_error)
        for f in report["folders"]:
            f["held"] = self.holds.get(f["id"])
        if self.verdict is not None:
            report["run_conditions"] = {
                "waiting_for": list(self.verdict.waiting_for), "unreadable": list(self.verdict.unreadable),
                "text": self.verdict.text(),
                "checked": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.verdict_at or time.time()))}
        report["daemon"] = {"running": True, "pid": os.getpid(),
                            "watcher": self.watcher.state}
        if self.config_error:
            report["config_error"] = self.config_error
        return report


def run_daemon(config_path: Path, *, debug: bool = False) -> int:
    """`shoal run`. Raises AlreadyRunning (exit 1) if the state dir has a daemon already."""
    config = load_or_create_config(config_path, create=True)
    setup_logging(config.log.level, config.state_dir, debug=debug, to_file=True)
    lock_fd = acquire_lock(config.state_dir)
    daemon = Daemon(config_path, config)
    signal.signal(signal.SIGTERM, daemon.stop)
    signal.signal(signal.SIGINT, daemon.stop)
    try:
        daemon.run()
    except Cancelled:
        pass
    finally:
        from shoal.hub.embedded import stop_embedded_hubs

        stop_embedded_hubs()
        os.close(lock_fd)
    return 0
