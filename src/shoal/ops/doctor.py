"""`shoal doctor`: check the config, state dir, store, folders, watch limits, hub password,
run conditions (which of sync.when this machine can read) and hub, and say what to fix.

Every check is a small function returning a Finding (status, check, detail, fix), or None
when it does not apply here; the pure ones take plain values so they can be tested without
a machine in that state. run_doctor prints one line per finding:

    ok    store: /home/u/.local/share/shoal/shoal.db: integrity ok
    WARN  watch limit: 7000 directories to watch, the limit is 8192
          fix: sudo sysctl fs.inotify.max_user_watches=524288 ...

Doctor repairs nothing and never creates a store, a state dir or a folder.
"""

from __future__ import annotations

import os
import shlex
import stat
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple, TextIO

from shoal.config import Config, FolderConfig, load_config, read_hub_password
from shoal.core.paths import SHOAL_DIR
from shoal.platform import is_android_shared_storage
from shoal.errors import ConfigError, ShoalError, StoreCorrupt, StoreError

OK, WARN, FAIL = "ok", "WARN", "FAIL"
INOTIFY_WATCHES = Path("/proc/sys/fs/inotify/max_user_watches")
INOTIFY_SUGGESTED = 524288
INOTIFY_SHARE = 0.8  # warn when the folders alone need more than this share of the limit


class Finding(NamedTuple):
    status: str  # ok | WARN | FAIL
    check: str
    detail: str
    fix: str | None = None


# -- pure checks --------------------------------------------------------------------------------


def inotify_check(max_watches: int, dirs: int) -> Finding:
    """WARN when the folders' directories need more than 80% of the inotify watch limit
    (each directory takes one watch; other programs need some too). Raises nothing."""
    detail = f"{dirs} directories to watch, the limit is {max_watches}"
    if dirs <= max_watches * INOTIFY_SHARE:
        return Finding(OK, "watch limit", detail)
    wanted = INOTIFY_SUGGESTED
    while wanted < dirs * 2:
        wanted *= 2
    if dirs > max_watches:
        detail += "; changes in the rest are only seen by the periodic rescan"
    fix = (f"sudo sysctl fs.inotify.max_user_watches={wanted}; to keep it after a reboot: "
           f"echo fs.inotify.max_user_watches={wanted} | sudo tee /etc/sysctl.d/90-shoal-inotify.conf")
    return Finding(WARN, "watch limit", detail, fix)


def android_storage_check(folder_id: str, path: str, real_path: str, home: str) -> Finding | None:
    """WARN for a folder on Android shared storage (given as written and as resolved);
    None when it is not there. Raises nothing."""
    if not (is_android_shared_storage(path, home) or is_android_shared_storage(real_path, home)):
        return None
    return Finding(WARN, f"folder {folder_id}",
                   f"{path} is on Android shared storage: file events may not arrive there, so shoal "
                   "falls back to the periodic rescan (sync.interval)",
                   "nothing to repair; lower sync.interval in the config to pick up changes sooner")


def mode_check(check: str, path: Path, mode: int, allowed: int = 0o700) -> Finding | None:
    """FAIL if `mode` (st_mode of the directory `path`) gives group or others more than
    `allowed` does (0700: nothing; 0711 while root runs the wheel's hub: enter, not list);
    None if it does not. Raises nothing."""
    extra = stat.S_IMODE(mode) & 0o077 & ~allowed
    if os.name == "posix" and extra:
        what = "writable" if extra & 0o022 else "readable" if extra & 0o044 else "enterable"
        return Finding(FAIL, check, f"{path} is {what} by group or others (mode {stat.S_IMODE(mode):04o}); "
                       "another local user could read the index of every folder, or replace the store",
                       f"chmod {allowed:o} {_q(path)}")
    return None


def socket_dir_check(sock: Path, owners: set[int]) -> Finding:
    """The running embedded hub's socket directory: a directory owned by us (or the hub's
    server user), that nobody else may enter. Raises nothing."""
    check = "hub socket"
    try:
        info = os.lstat(sock)
    except OSError as e:
        return Finding(WARN, check, f"cannot inspect {sock}: {e.strerror}", "restart shoal")
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        return Finding(FAIL, check, f"{sock} is not a directory (a symlink?)",
                       f"stop shoal, remove {_q(sock)}, then start shoal again")
    if info.st_uid not in owners:
        return Finding(FAIL, check, f"{sock} is owned by uid {info.st_uid}, not by this user: another "
                       "local user may reach or replace the hub's socket",
                       f"stop shoal, remove {_q(sock)} (as root if need be), then start shoal again")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        return Finding(FAIL, check, f"{sock} has mode {mode:04o}: another local user may reach the hub's socket",
                       f"chmod 700 {_q(sock)}; restarting shoal also makes it private")
    return Finding(OK, check, f"{sock}: private (mode {mode:04o})")


def hub_auth_check(pgdata: Path) -> Finding | None:
    """The embedded hub's pg_hba.conf has no `trust` rule; None if there is no hub there.
    Raises nothing."""
    try:
        text = (pgdata / "pg_hba.conf").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    rules = [line.split("#", 1)[0].split() for line in text.splitlines()]
    if any("trust" in rule for rule in rules if rule):
        return Finding(FAIL, "hub auth", f"{pgdata / 'pg_hba.conf'} has `trust` rules: anyone who "
                       "reaches the socket logs in as the hub's superuser without a password",
                       "restart shoal (`shoal run` or the service): it replaces them with peer and "
                       "password authentication")
    return Finding(OK, "hub auth", "no trust rules")


def store_permissions_check(state_dir: Path) -> Finding | None:
    """The store's files (database, -wal, -shm) are this user's and 0600; None if there is no
    store. Raises nothing."""
    from shoal.localstore.store import store_files

    files, loose = [], []
    for f in store_files(state_dir):
        try:
            info = os.lstat(f)
        except OSError:
            continue
        files.append(f)
        if stat.S_IMODE(info.st_mode) & 0o077 or info.st_uid != os.geteuid():
            loose.append(f"{f} (mode {stat.S_IMODE(info.st_mode):04o}, uid {info.st_uid})")
    if not files:
        return None
    if loose:
        return Finding(FAIL, "store permissions", f"readable by others or not this user's: {', '.join(loose)}",
                       "chmod 600 " + " ".join(_q(f) for f in files))
    return Finding(OK, "store permissions", "0600")


def hub_schema_check(version: int | None, latest: int) -> Finding:
    """Compare the hub's schema version with this shoal's newest migration. Raises nothing."""
    if version is None:
        return Finding(FAIL, "hub schema", "the hub has no shoal schema",
                       "run `shoal hub init` (as the hub owner)")
    if version < latest:
        return Finding(WARN, "hub schema", f"version {version}, this shoal has {latest}",
                       "run `shoal hub init` as the hub owner to migrate it")
    if version > latest:
        return Finding(FAIL, "hub schema", f"version {version} is newer than this shoal ({latest})",
                       "upgrade shoal on this device")
    return Finding(OK, "hub schema", f"version {version}")


# -- checks of this machine ---------------------------------------------------------------------


def config_check(path: Path) -> tuple[Finding, Config | None]:
    """Load the config file; FAIL with every problem (file:line: key: what) if it is invalid.
    Raises nothing."""
    try:
        config = load_config(path)
    except ConfigError as e:
        fix = ("run `shoal init` to write one, or pass --config PATH" if "not found" in str(e)
               else f"edit {path} (every key is described in config.example.yaml), then run "
                    "`shoal config check`")
        return Finding(FAIL, "config", "; ".join(e.problems), fix), None
    hub = "embedded hub" if config.hub.url == "embedded" else "hub " + _redact(config.hub.url)
    return Finding(OK, "config", f"{path}: {len(config.folders)} folder(s), {hub}"), config


def state_dir_check(state_dir: Path, allowed: int = 0o700) -> Finding:
    """The state dir exists, is a writable directory, and only its owner may use it (group
    and others get nothing beyond `allowed`). Raises nothing."""
    try:
        info = state_dir.stat()
    except FileNotFoundError:
        return Finding(WARN, "state dir", f"{state_dir} does not exist yet",
                       "run `shoal init` or `shoal run`; it is created then")
    except OSError as e:
        return Finding(FAIL, "state dir", f"cannot read {state_dir}: {e.strerror}",
                       f"check the permissions of {state_dir} and its parents")
    if not stat.S_ISDIR(info.st_mode):
        return Finding(FAIL, "state dir", f"{state_dir} is not a directory",
                       "move it away, or set state_dir in the config to another path")
    if not os.access(state_dir, os.W_OK | os.X_OK):
        return Finding(FAIL, "state dir", f"{state_dir} is not writable by this user",
                       f"chmod u+rwx {_q(state_dir)} (or run shoal as its owner)")
    return mode_check("state dir", state_dir, info.st_mode, allowed) or Finding(OK, "state dir", f"{state_dir}")


def store_check(state_dir: Path):
    """Open the store (never creating one) and run its integrity check.

    Returns (finding, store or None); the caller closes the store. A corrupt or foreign file
    is reported, left untouched. Raises nothing.
    """
    from shoal.localstore import open_store
    from shoal.localstore.store import STORE_FILENAME

    path = state_dir / STORE_FILENAME
    try:
        store = open_store(state_dir, create=False)
    except StoreCorrupt as e:
        return Finding(FAIL, "store", str(e),
                       _move_away(path)), None
    except StoreError as e:
        if not path.exists():
            return Finding(WARN, "store", f"no store yet at {path}",
                           "run `shoal init` or `shoal scan`; it is created then"), None
        return Finding(FAIL, "store", str(e), f"check that {path} is readable and writable by this user"), None
    try:
        problems = store.integrity_problems()
    except Exception as e:  # apsw raises its own errors on a file damaged after opening
        problems = [str(e)]
    if problems:
        store.close()
        return Finding(FAIL, "store", f"{path} failed its integrity check: {'; '.join(problems[:3])}",
                       _move_away(path)), None
    return Finding(OK, "store", f"{path}: integrity ok"), store


def folder_check(folder: FolderConfig, marker_seen: bool | None, paused: str | None) -> Finding:
    """One folder: it exists, holds its marker naming its id, is readable and writable, and is
    not paused. `marker_seen`/`paused` come from the store (False/None when there is no store
    yet; `marker_seen` None when the store cannot be read, so it is unknown). Raises nothing."""
    from shoal.scan.scanner import marker_path

    check, root = f"folder {folder.id}", folder.path
    marker = marker_path(root)
    if root.exists() and not root.is_dir():
        return Finding(FAIL, check, f"{root} is not a directory",
                       f"move it away, or fix the path of folder {folder.id} in the config")
    if not root.is_dir():
        if marker_seen:
            return Finding(FAIL, check, f"{root} is missing (unmounted or deleted?); the folder is paused",
                           f"mount or restore {root}; or remove folder {folder.id} from the config")
        return Finding(WARN, check, f"{root} does not exist yet; the first scan creates it",
                       f"create it (mkdir -p {_q(root)}) or run `shoal scan`; check the path if it is a typo")
    recreate = f"printf '%s\\n' {folder.id} > {_q(marker)}"
    try:
        content = marker.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        if marker_seen:
            return Finding(FAIL, check, f"marker {marker} is missing; the folder is paused",
                           f"if {root} really is folder {folder.id}: {recreate}")
        if marker_seen is None:
            return Finding(WARN, check, f"marker {marker} is missing (the store cannot tell whether "
                           "this folder was synced before)",
                           f"if it was synced before and {root} really is folder {folder.id}: {recreate}; "
                           f"if it is new, `shoal scan --folder {folder.id}` writes it")
        return Finding(WARN, check, f"no marker {marker} yet; the first scan writes it",
                       f"run `shoal scan --folder {folder.id}`")
    except OSError as e:
        return Finding(FAIL, check, f"cannot read marker {marker}: {e.strerror}",
                       f"chmod u+rw {_q(marker)} (or run shoal as the folder's owner)")
    if content != folder.id:
        return Finding(FAIL, check, f"marker {marker} names folder {content!r}, not {folder.id!r}; paused",
                       f"check the folder path in the config; if it is right: {recreate}")
    if not os.access(root, os.R_OK | os.W_OK | os.X_OK):
        return Finding(FAIL, check, f"{root} is not readable and writable by this user",
                       f"chmod u+rwx {_q(root)} (or run shoal as the folder's owner)")
    if paused:
        return Finding(WARN, check, f"paused: {paused}",
                       "fix the cause, then run `shoal sync --now` (add --allow-mass-delete if the "
                       "deletions are intended)")
    return Finding(OK, check, f"{root} ({folder.mode})")


def count_dirs(roots: Iterable[Path]) -> int:
    """Directories under the folders (each one an inotify watch), `.shoal` left out.
    Raises nothing (unreadable directories are skipped)."""
    total = 0
    for root in roots:
        if not root.is_dir():
            continue
        for _dirpath, dirnames, _files in os.walk(root):
            total += 1
            dirnames[:] = [d for d in dirnames if d != SHOAL_DIR]
    return total


def read_max_watches(path: Path = INOTIFY_WATCHES) -> int | None:
    """The inotify watch limit, None where it cannot be read (not Linux, Android). Raises nothing."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def hub_url_checks(config: Config) -> list[Finding]:
    """The hub URL's safety (config.hub_security_notices): a password in a config file others
    can read FAILs ("hub password"); a password in a private one WARNs; a remote hub without
    sslmode verify-full/verify-ca FAILs ("hub tls": the link, the password and every file can
    be downgraded to plaintext), with `require` it WARNs (encrypted, server unchecked).
    Raises nothing."""
    from shoal.config import hub_security_notices, hub_url_target

    findings = []
    target = hub_url_target(config.hub.url)
    for n in hub_security_notices(config):
        detail, _, fix = n.message.partition("; ")
        detail = detail.split(": ", 1)[1] if ": " in detail else detail  # drop the file:line
        if "password" in detail:
            findings.append(Finding(FAIL if n.level == "refuse" else WARN, "hub password",
                                    f"{config.path}: {detail}", fix))
        else:
            status = WARN if target.sslmode == "require" else FAIL
            findings.append(Finding(status, "hub tls", detail, fix))
    if target.remote and not any(f.check == "hub tls" for f in findings):
        findings.append(Finding(OK, "hub tls", f"sslmode={target.sslmode}"))
    return findings


def password_check(config: Config) -> Finding | None:
    """The hub password named by the config can be read (file mode 0600); None if none is
    configured. Raises nothing."""
    hub = config.hub
    if not hub.password_env and hub.password_file is None:
        return None
    where = f"environment variable {hub.password_env}" if hub.password_env else str(hub.password_file)
    try:
        read_hub_password(hub)
    except ConfigError as e:
        if hub.password_env:
            fix = f"export {hub.password_env}=... in the environment shoal runs in (the service's too)"
        elif "0600" in str(e):
            fix = f"chmod 600 {_q(hub.password_file)}"
        else:
            fix = (f"umask 077; printf '%s' 'PASSWORD' > {_q(hub.password_file)}  "
                   "(the password `shoal hub add-device` printed)")
        return Finding(FAIL, "hub password", str(e), fix)
    return Finding(OK, "hub password", f"read from {where}")


def passphrase_checks(config: Config) -> list[Finding]:
    """Each encrypted folder's passphrase file can be read (mode 0600). Raises nothing."""
    from shoal.config import read_passphrase

    findings = []
    for folder in config.folders:
        if not folder.encrypted:
            continue
        check = f"folder {folder.id} passphrase"
        try:
            read_passphrase(folder)
        except ConfigError as e:
            fix = (f"chmod 600 {_q(folder.passphrase_file)}" if "0600" in str(e) else
                   f"umask 077; printf '%s' 'PASSPHRASE' > {_q(folder.passphrase_file)}  (the folder's passphrase)")
            findings.append(Finding(FAIL, check, str(e), fix))
        else:
            findings.append(Finding(OK, check, f"read from {folder.passphrase_file} (end-to-end encrypted)"))
    return findings


def hub_checks(config: Config, password_ok: bool = True, timeout: float = 3.0) -> list[Finding]:
    """The hub answers, and its schema version fits this shoal. An embedded hub that is not
    running is not started (shoal run starts it). Raises nothing."""
    from shoal.hub.client import connect, resolve_hub_url
    from shoal.hub.schema import latest_tables, schema_state

    if not password_ok:
        return [Finding(WARN, "hub", "not checked: the hub password cannot be read",
                        "fix the hub password first (see above)")]
    embedded = config.hub.url == "embedded"
    if embedded and not (config.state_dir / "hub" / "postmaster.pid").exists():
        return [Finding(WARN, "hub", "the embedded hub is not running",
                        "start shoal (`shoal run` or the service): it starts the embedded hub")]
    shown = "embedded" if embedded else _redact(config.hub.url)
    try:
        before = os.stat(config.state_dir).st_mode if embedded else None
        try:
            url = resolve_hub_url(config.hub.url, config.state_dir)
        finally:
            # Run as root, the wheel widens the directories above the hub's data dir each time
            # it attaches: undo that side effect of looking (doctor changes nothing).
            if before is not None and os.stat(config.state_dir).st_mode != before:
                os.chmod(config.state_dir, stat.S_IMODE(before))
        conn = connect(url, read_hub_password(config.hub), timeout=timeout)
    except ShoalError as e:
        fix = ("stop and restart shoal (the embedded hub's files are in the state dir)" if embedded else
               "check hub.url in the config, that the server runs and listens there, that the network "
               "reaches it, and that pg_hba.conf lets this role connect")
        return [Finding(FAIL, "hub", f"{shown}: {e}", fix)]
    try:
        try:
            version, _api = schema_state(conn)
        except ShoalError as e:
            return [Finding(OK, "hub", f"{shown}: reachable"),
                    Finding(FAIL, "hub schema", str(e), "check that this role may use schema shoal")]
    finally:
        conn.close()
    return [Finding(OK, "hub", f"{shown}: reachable"), hub_schema_check(version, latest_tables())]


def _move_away(path: Path) -> str:
    return (f"stop shoal, move the file away (mv {_q(path)} {_q(str(path) + '.broken')}); the next run "
            "builds a new index from the folders and merges with the hub")


def _q(path) -> str:
    """A path as one shell word, for the fix lines."""
    return shlex.quote(str(path))


def _redact(url: str) -> str:
    from shoal.hub.pgerrors import scrub_secrets

    return scrub_secrets(url)


# -- the command --------------------------------------------------------------------------------


def diagnose(config_path: Path) -> list[Finding]:
    """Every finding for the config at `config_path`, in the order shown. Raises nothing
    (except on a bug)."""
    finding, config = config_check(config_path)
    findings = [finding]
    if config is None:
        return findings
    embedded = config.hub.url == "embedded"
    findings.append(state_dir_check(config.state_dir, _state_dir_mode() if embedded else 0o700))
    finding, store = store_check(config.state_dir)
    findings.append(finding)
    perms = store_permissions_check(config.state_dir)
    if perms:
        findings.append(perms)
    if embedded:
        findings += _embedded_hub_findings(config.state_dir / "hub")
        served = hub_tls_check(config.state_dir, config.hub.serve_listen)
        if served:
            findings.append(served)
    store_unreadable = store is None and finding.status == FAIL
    try:
        for folder in config.folders:
            row = store.folder(folder.id) if store is not None else None
            seen = None if store_unreadable else bool(row and row.marker_seen)
            findings.append(folder_check(folder, seen, row.paused if row else None))
    finally:
        if store is not None:
            store.close()
    home = os.path.expanduser("~")
    for folder in config.folders:
        android = android_storage_check(folder.id, str(folder.path), os.path.realpath(folder.path), home)
        if android:
            findings.append(android)
    if sys.platform.startswith("linux"):
        limit = read_max_watches()
        if limit is not None:
            findings.append(inotify_check(limit, count_dirs(f.path for f in config.folders)))
    findings += hub_url_checks(config)
    password = password_check(config)
    if password:
        findings.append(password)
    findings += passphrase_checks(config)
    conditions = _run_conditions_finding(config)
    if conditions:
        findings.append(conditions)
    findings += hub_checks(config, password_ok=password is None or password.status == OK)
    return findings


def _state_dir_mode() -> int:
    from shoal.hub.embedded import state_dir_mode

    return state_dir_mode()


def _embedded_hub_findings(pgdata: Path) -> list[Finding]:
    """The embedded hub's authentication rules, and its socket directory while it runs."""
    findings = []
    auth = hub_auth_check(pgdata)
    if auth:
        findings.append(auth)
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        owners = {os.geteuid(), os.stat(pgdata).st_uid}
    except OSError:
        return findings
    if len(lines) > 4 and lines[4].strip():
        findings.append(socket_dir_check(Path(lines[4].strip()), owners))
    return findings


def hub_tls_check(state_dir: Path, listen: str | None) -> Finding | None:
    """A served hub (hub.serve.listen): its CA's SHA-256 fingerprint, and its TLS dir 0700
    and private keys 0600; None when the hub is not served and has no TLS files. Raises nothing."""
    from shoal.hub import tls

    paths = tls.tls_paths(state_dir)
    if not listen and not paths.dir.exists():
        return None
    check = f"hub TLS ({listen})" if listen else "hub TLS"
    problems = tls.key_file_problems(state_dir)
    if problems:
        return Finding(FAIL, check, "; ".join(problems),
                       f"chmod 700 {_q(paths.dir)}; chmod 600 {_q(paths.ca_key)} {_q(paths.server_key)}; "
                       "if others could read a key, move the directory away and let every device join again")
    try:
        fingerprint = tls.ca_fingerprint(tls.load_ca_pem(state_dir))
    except (ShoalError, ValueError) as e:
        if not paths.ca_cert.exists():
            return Finding(WARN, check, "no hub CA yet", "start shoal (`shoal run`): it makes the hub CA")
        return Finding(FAIL, check, f"cannot read the hub CA {paths.ca_cert}: {e}",
                       "move the hub-tls directory away and restart shoal (every device must join again)")
    return Finding(OK, check, f"CA fingerprint (SHA-256) {fingerprint}; keys 0600 in {paths.dir} (0700)")


RUN_CONDITIONS_FIX = ("on Termux: pkg install termux-api, and install the Termux:API app from where Termux came "
                      "from (F-Droid or GitHub); on Linux: NetworkManager (nmcli) tells Wi-Fi, "
                      "/sys/class/power_supply the charger and battery")


def run_conditions_check(conds, reading, at) -> Finding | None:
    """sync.when (core.conditions.RunConditions) against what this machine lets shoal read
    (`reading`, core.conditions.Reading) at local time `at`: WARN naming every condition that
    cannot be read (it does not hold sync back: nothing fails because of it); else ok with the
    readings and whether sync may run now. None when no condition is set. Raises nothing."""
    from shoal.core.conditions import evaluate

    if not conds.any:
        return None
    verdict = evaluate(conds, reading, at)
    if verdict.unreadable:
        return Finding(WARN, "run conditions", f"{', '.join(verdict.unreadable)} cannot be read on this machine, "
                       "so that condition does not hold sync back", RUN_CONDITIONS_FIX)
    shown = []
    if reading.wifi is not None:
        shown.append(f"Wi-Fi: {'connected' if reading.wifi else 'not connected'}")
    if reading.charging is not None:
        shown.append("charging" if reading.charging else "not charging")
    if reading.battery is not None:
        shown.append(f"battery {reading.battery}%")
    now = verdict.text() if not verdict.may_sync else "sync may run now"
    return Finding(OK, "run conditions", "; ".join([*shown, now]))


def _run_conditions_finding(config: Config) -> Finding | None:
    import time
    from datetime import datetime

    from shoal.core.conditions import needed_readings
    from shoal.daemon.conditions import ConditionProbe

    conds = config.sync.when
    if not conds.any:
        return None
    reading = ConditionProbe().read(needed_readings(conds), time.monotonic())
    return run_conditions_check(conds, reading, datetime.now().time())


def format_finding(f: Finding) -> list[str]:
    """The lines of one finding: `ok|WARN|FAIL  check: detail`, then `      fix: ...` if not ok."""
    lines = [f"{f.status:<4}  {f.check}: {f.detail}"]
    if f.status != OK:
        lines.append(f"      fix: {f.fix or 'see the message above'}")
    return lines


def run_doctor(config_path: Path, out: TextIO | None = None) -> int:
    """Print every finding; returns 0 if none is FAIL, else 1. Raises nothing (except on a bug)."""
    out = out or sys.stdout
    findings = diagnose(Path(config_path))
    for f in findings:
        for line in format_finding(f):
            print(line, file=out)
    return 1 if any(f.status == FAIL for f in findings) else 0
