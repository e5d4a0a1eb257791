"""The `shoal` command line: argument parsing and output only.

Errors become one clear line on stderr and an exit code (0 ok, 1 the operation failed,
2 bad usage or configuration); a traceback only with --debug.

What a command does lives below (app, ops, sync, hub); here it is called and its result shown.
Modules that load psycopg (sync.engine, hub.*) or watchdog (daemon.loop) are imported inside the
commands that need them, so that `shoal scan`, `shoal config check` or `--help` start without
them (and work where libpq is missing); rich loads only when a progress bar is drawn. So are the
daemon's control socket, ops.* and the scanner: a command imports what it uses (a no-change
`shoal scan` of 100,000 files is held to twice a `find`, process start included).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from shoal import __version__
from shoal.app import (LocalDevice, devices_report, pause_holds, pause_or_resume, raise_if_held, read_pauses,
                       setup_logging, status_report)
from shoal.config import hub_security_notices, load_config, read_hub_password, resolve_config_path
from shoal.core.text import printable
from shoal.errors import ConfigError, ShoalError, UsageError
from shoal.progress import TerminalProgressBar, human_bytes


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # exit 2 with one line, as every other usage error
        raise UsageError(f"{self.prog}: {message}")


def _globals(p: argparse.ArgumentParser, *, top: bool) -> None:
    default = None if top else argparse.SUPPRESS
    p.add_argument("--config", metavar="PATH", default=default,
                   help="config file (default: $SHOAL_CONFIG or the platform's config dir)")
    p.add_argument("--debug", action="store_true", default=False if top else argparse.SUPPRESS,
                   help="show tracebacks and debug logs")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="shoal", description="Local-first folder sync through a PostgreSQL hub.")
    p.add_argument("--version", action="version", version=f"shoal {__version__}")
    _globals(p, top=True)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def cmd(name: str, help: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help)
        _globals(c, top=False)
        return c

    def json_option(c: argparse.ArgumentParser) -> None:
        c.add_argument("--json", action="store_true", help="print JSON instead of text")

    c = cmd("init", "write the config file, create the store, register at the hub")
    c.add_argument("--device-name", metavar="N",
                   help="how this device is named to the others (default: the host name)")
    c.add_argument("--hub", metavar="URL", help="hub URL (default: embedded)")
    c.add_argument("--serve", metavar="HOST:PORT",
                   help="serve the embedded hub to other devices on this address, TLS only (hub.serve.listen)")
    c.add_argument("--folder", metavar="ID=PATH", action="append", default=[],
                   help="a folder to sync, its id the same on every device; repeatable "
                        "(default: default=~/Shoal)")
    cmd("run", "run the daemon in the foreground")
    c = cmd("scan", "index the folders now, without the hub")
    c.add_argument("--folder", metavar="ID", help="only this folder (default: every folder)")
    c = cmd("sync", "one complete sync cycle now")
    c.add_argument("--now", action="store_true", required=True,
                   help="run the cycle now (required; through the daemon if one is running)")
    c.add_argument("--folder", metavar="ID", help="only this folder (default: every folder)")
    c.add_argument("--allow-mass-delete", action="store_true",
                   help="confirm the deletions that paused a folder")
    c = cmd("pause", "hold syncing back (watching and indexing go on) until `shoal resume`")
    c.add_argument("--folder", metavar="ID", help="only this folder (default: the whole device)")
    c.add_argument("--for", dest="duration", metavar="DURATION", type=_duration,
                   help="resume by itself after this long (30m, 2h, 1d; default: until `shoal resume`)")
    c = cmd("resume", "sync again after `shoal pause`")
    c.add_argument("--folder", metavar="ID",
                   help="only this folder (default: the whole device and every folder paused on its own)")
    c = cmd("status", "device, hub, daemon and per-folder state")
    json_option(c)
    c = cmd("conflicts", "the conflicts recorded; `conflicts resolve PATH --keep mine|theirs|both` acts on one")
    c.add_argument("action", nargs="?", choices=["resolve"], help="resolve: keep one version (or both)")
    c.add_argument("path", nargs="?", metavar="PATH", help="resolve: the file or its conflict copy")
    c.add_argument("--keep", choices=["mine", "theirs", "both"],
                   help="resolve: this device's version, the other device's, or both (the copy stays)")
    c.add_argument("--all", action="store_true", help="resolve: every conflict recorded")
    c.add_argument("--folder", metavar="ID", help="resolve: only this folder's conflicts")
    json_option(c)
    c = cmd("log", "the versions of a file the hub keeps, or a folder's latest changes")
    c.add_argument("path", nargs="?", metavar="PATH", help="a file (in a folder, or relative to --folder)")
    c.add_argument("--folder", metavar="ID", help="the folder (default: the one holding PATH, or the only one)")
    c.add_argument("--limit", metavar="N", type=int, default=50, help="at most N versions (default: 50)")
    json_option(c)
    c = cmd("restore", "bring a file (or a whole folder) back as it was; pushed like an edit")
    c.add_argument("path", nargs="?", metavar="PATH", help="the file (without: the whole folder, with --at)")
    c.add_argument("--version", metavar="V", type=int, help="the version to bring back (see `shoal log PATH`)")
    c.add_argument("--at", metavar="TIME", help="as it was at TIME: ISO 8601, or how long ago (2h, 3d)")
    c.add_argument("--folder", metavar="ID", help="the folder (default: the one holding PATH, or the only one)")
    c.add_argument("--dry-run", action="store_true", help="only list what would change")
    json_option(c)
    c = cmd("revert", "undo everything one device pushed since a time")
    c.add_argument("--device", metavar="NAME", required=True, help="the device whose changes are undone")
    c.add_argument("--since", metavar="TIME", required=True, help="ISO 8601, or how long ago (2h, 3d)")
    c.add_argument("--folder", metavar="ID", help="the folder (default: the only one)")
    c.add_argument("--dry-run", action="store_true", help="only list what would change")
    json_option(c)
    c = cmd("devices", "every device of the hub")
    json_option(c)
    c = cmd("dupes", "identical contents stored at several paths")
    json_option(c)
    c = cmd("config", "configuration file tools")
    c.add_argument("action", choices=["check"], help="check: validate the config file")
    c = cmd("hub", "hub administration")
    c.add_argument("action", choices=["init", "add-device", "revoke-device", "quota", "gc", "stats"],
                   help="init: create or migrate the hub schema; add-device NAME: a hub login for "
                        "a new device; revoke-device NAME: disable it; quota SPACE: set a space's quota; "
                        "gc: remove old versions and what nothing references; stats: what the hub holds")
    c.add_argument("name", nargs="?", help="the device NAME (add-device, revoke-device) or SPACE (quota)")
    c.add_argument("--url", metavar="URL",
                   help="init: the hub to set up, as a URL (default: the config's hub)")
    c.add_argument("--space", metavar="S", help="add-device: the space the device belongs to (default: default)")
    c.add_argument("--changes", metavar="N", type=int,
                   help="quota SPACE: the most changes the space may store (0: no quota)")
    c.add_argument("--bytes", metavar="N", type=int,
                   help="quota SPACE: the most bytes of blocks the space may store (0: no quota)")
    c.add_argument("--expires", metavar="DURATION", type=_duration,
                   help="add-device: how long the invite can be used, once (default: 24h)")
    c.add_argument("--qr", action="store_true", help="add-device: also draw the invite as a QR code")
    c.add_argument("--keep", metavar="DURATION", type=_duration_or_zero,
                   help="gc: keep versions replaced or deleted less than this long ago "
                        "(default: the config's hub.keep_versions, else 30d); the current version of every "
                        "file and what an active device has not pulled yet are always kept")
    c.add_argument("--grace", metavar="DURATION", type=_duration_or_zero,
                   help="gc: keep unreferenced contents and blocks younger than this: they may belong to a "
                        "push in flight (default: 1h; 0s only when no device is pushing)")
    c.add_argument("--dry-run", action="store_true", help="gc: count what would be removed, remove nothing")
    c.add_argument("--json", action="store_true",
                   help='add-device: print {"invite": TOKEN, "expires": TIME, ...} as JSON; '
                        "gc, stats: print the report as JSON")
    c = cmd("join", "set this device up from an invite (`shoal hub add-device` on the hub prints it)")
    c.add_argument("token", help="the invite: shoal1.…")
    c.add_argument("--folder", metavar="ID=PATH", action="append", default=[],
                   help="sync the hub's folder ID at PATH here (repeatable)")
    c.add_argument("--device-name", metavar="N", help="this device's name (default: the host name)")
    c.add_argument("--passphrase-file", metavar="F", type=Path,
                   help="the passphrase of the encrypted folders joined (a file, mode 0600)")
    c = cmd("folder", "folder tools")
    c.add_argument("action", choices=["passphrase"],
                   help="passphrase ID --new-file PATH: change an encrypted folder's passphrase (re-wraps its key)")
    c.add_argument("folder_id", metavar="ID", help="the folder's id")
    c.add_argument("--new-file", metavar="PATH", type=Path, required=True,
                   help="passphrase: a file (mode 0600) with the new passphrase")
    c = cmd("service", "install the background service for this platform")
    c.add_argument("action", choices=["install", "uninstall"],
                   help="install (or update) and start the service, or stop and remove it")
    cmd("doctor", "check store, hub, watch limits and permissions")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        if not args.command:
            build_parser().print_help(sys.stderr)
            return 2
        setup_logging("warning" if args.command not in ("run",) else "info", None, debug=args.debug)
        return _COMMANDS[args.command](args) or 0
    except ShoalError as e:
        if debug:
            raise
        lines = e.problems if isinstance(e, ConfigError) else [str(e)]
        for line in lines:
            say(f"shoal: {line}" if not isinstance(e, ConfigError) else line, file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        say("shoal: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:  # --help / --version
        return e.code if isinstance(e.code, int) else 0
    except ImportError as e:
        if debug or "pq" not in str(e):
            raise
        say("shoal: the PostgreSQL client library libpq cannot be loaded: install it "
              "(Termux: pkg install postgresql; Debian: apt install libpq5) or pip install 'psycopg[binary]'",
              file=sys.stderr)
        return 1
    except Exception as e:  # a bug: still one line unless --debug
        if debug:
            raise
        say(f"shoal: unexpected error: {type(e).__name__}: {e} (run with --debug for details)",
              file=sys.stderr)
        return 1


# -- helpers --------------------------------------------------------------------------

def _config_path(args) -> Path:
    return resolve_config_path(getattr(args, "config", None))


def _device(args) -> LocalDevice:
    return LocalDevice(load_config(_config_path(args)))


def say(line: str, file=None) -> None:
    """Print one line of human output. Names, paths and messages in it may come from the hub
    or the disk, so every control character is escaped (core.text.printable): a terminal
    escape from another device is shown, never obeyed."""
    print(printable(line), file=file or sys.stdout)


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, default=str, ensure_ascii=False))


# -- commands -------------------------------------------------------------------------

def cmd_init(args) -> int:
    from shoal.ops.setup import init_device, write_init_config
    path = _config_path(args)
    folders = _folder_specs(args.folder)
    write_init_config(path, args.device_name, args.hub, folders, serve=args.serve)
    say(f"wrote {path}")
    result = init_device(path)
    for folder_id, reason in result.folder_problems:
        say(f"shoal: folder {folder_id}: {reason}", file=sys.stderr)
    say(f"device {result.device_name} ({result.device_id}), store in {result.state_dir}")
    if result.not_registered is None:
        say("registered at the hub")
    else:
        say(f"shoal: not registered at the hub yet ({result.not_registered}); it registers on the first sync",
            file=sys.stderr)
    return 0


def cmd_scan(args) -> int:
    from shoal.scan.scanner import scan_folders
    device = _device(args)
    try:
        folders = device.config.folders
        if args.folder:
            folders = tuple(f for f in folders if f.id == args.folder)
            if not folders:
                raise UsageError(f"no folder with id {args.folder!r} in {device.config.path}")
        with TerminalProgressBar("scan") as progress:
            results = scan_folders(device.store, folders, now=time.time(), progress=progress)
        paused = False
        for r in results:
            line = (f"{r.folder_id}: {r.files} files, {human_bytes(r.bytes)}; {r.added} added, "
                    f"{r.modified} modified, {r.deleted} deleted")
            if r.errors:
                line += f", {r.errors} unreadable"
            say(line)
            if r.paused:
                paused = True
                say(f"shoal: folder {r.folder_id} paused: {r.paused}", file=sys.stderr)
        return 1 if paused else 0
    finally:
        device.close()


def cmd_sync(args) -> int:
    from shoal.daemon.control import daemon_client
    path = _config_path(args)
    client = daemon_client(path)
    if client is not None:
        return client.sync_now(args.folder, args.allow_mass_delete)
    from shoal.sync.engine import SyncEngine, raise_if_paused  # psycopg

    device = _device(args)
    try:
        # A user's pause holds a folder back here too (paused means paused); run conditions
        # (sync.when) do not: the user asked for now.
        hold = pause_holds(device.config, read_pauses(device.config.state_dir), time.time())
        with TerminalProgressBar("sync") as progress:
            engine = SyncEngine(device.config, device.store, device.open_hub, progress=progress)
            report = engine.cycle([args.folder] if args.folder else None,
                                  allow_mass_delete=args.allow_mass_delete, retry_now=True, hold=hold)
        for line in report.summary_lines():
            say(line)
        raise_if_paused(report)
        raise_if_held(report)
        return 0
    finally:
        device.close()


def _iso_utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def cmd_pause(args) -> int:
    """`shoal pause [--folder ID] [--for DURATION]`: through the running daemon (it takes effect
    at once), else written to the state dir's pause file for the daemon to find when it starts."""
    return _pause_or_resume(args, "pause")


def cmd_resume(args) -> int:
    return _pause_or_resume(args, "resume")


def _pause_or_resume(args, op: str) -> int:
    from shoal.daemon.control import daemon_client
    path = _config_path(args)
    config = load_config(path)
    folder = args.folder
    if folder is not None and config.folder(folder) is None:
        raise UsageError(f"no folder with id {folder!r} in {path}")
    until = time.time() + args.duration if op == "pause" and args.duration else None
    client = daemon_client(path)
    if client is not None:
        reply = client.request({"op": op, "folder": folder, "until": until})
        if not reply.get("ok"):
            say(f"shoal: {reply.get('error') or op + ' failed'}", file=sys.stderr)
            return int(reply.get("exit_code", 1))
    else:
        try:
            pause_or_resume(config.state_dir, op, folder, until)
        except OSError as e:
            raise ShoalError(f"cannot write the pause state in {config.state_dir}: {e.strerror or e}") from e
    what = f"folder {folder}" if folder else "the whole device"
    if op == "pause":
        how = f"shoal resume --folder {folder}" if folder else "shoal resume"
        say(f"{what}: paused" + (f" until {_iso_utc(until)}" if until else "")
            + f"; watching and indexing go on; `{how}` to sync again")
        return 0
    say(f"{what}: resumed" + ("" if folder else " (and every folder paused on its own)")
        + ("" if client is not None else "; syncing starts with the daemon (`shoal run`)"))
    if folder and read_pauses(config.state_dir).holding(folder, time.time()):
        say("note: the whole device is still paused; `shoal resume` resumes it", file=sys.stderr)
    return 0


def cmd_status(args) -> int:
    from shoal.daemon.control import daemon_client
    path = _config_path(args)
    client = daemon_client(path)
    if client is not None:
        report = client.request({"op": "status"})["status"]
    else:
        try:
            device = _device(args)
        except ConfigError as e:
            report = {"config_error": e.problems, "daemon": {"running": False}}
            if args.json:
                _print_json(report)
            else:
                for line in e.problems:
                    say(line, file=sys.stderr)
            return 2
        try:
            report = status_report(device)
            report["daemon"] = {"running": False}
        finally:
            device.close()
    if args.json:
        _print_json(report)
        return 0
    _print_status(report)
    return 0


def _print_status(r: dict) -> None:
    say(f"device  {r['device']['name']} ({r['device']['id']})")
    hub = r["hub"]
    state = "reachable" if hub.get("reachable") else f"unreachable ({hub.get('error')})"
    if hub.get("unreachable_since"):
        state += f" since {hub['unreachable_since']}"
    say(f"hub     {hub['url']}: {state}")
    if hub.get("serve"):
        sv = hub["serve"]
        say(f"serving {sv['listen']} (TLS): " + ("yes" if sv.get("serving") else f"no ({sv.get('error') or 'daemon not running'})"))
    d = r.get("daemon", {})
    say(f"daemon  {'running, pid ' + str(d.get('pid')) if d.get('running') else 'not running'}"
          + (f"; watcher: {d['watcher']}" if d.get("watcher") else ""))
    if any((r.get("limits") or {}).values()):
        say("limits  " + ", ".join(f"{way} {rate or 'unlimited'}" for way, rate in r["limits"].items()))
    rc = r.get("run_conditions")
    if rc and rc.get("waiting_for"):
        say(f"when    {rc['text']} (sync.when, checked {rc['checked']}); scanning goes on; "
            "`shoal sync --now` syncs anyway")
    if rc and rc.get("unreadable"):
        say(f"when    cannot read {', '.join(rc['unreadable'])} here: not waited for (see `shoal doctor`)")
    if r.get("paused"):
        until = r["paused"].get("until")
        say(f"paused  the whole device, by the user{' until ' + until if until else ''}; watching and "
            "indexing go on; `shoal resume` to sync again")
    if r.get("config_error"):
        say("config  INVALID (running on the last good config):")
        for line in r["config_error"]:
            say(f"        {line}")
    for f in r["folders"]:
        last = f["last_sync"] or "never"
        say(f"folder  {f['id']} ({f['mode']}) {f['path']}")
        say(f"        {f['files']} files, {human_bytes(f['bytes'])}; {f['waiting']} waiting to be pushed;"
              f" last sync {last}; {f['conflicts']} conflicts")
        if f["paused"]:
            say(f"        PAUSED: {f['paused']}")
        if f.get("user_paused") and not f["user_paused"]["whole_device"]:
            until = f["user_paused"].get("until")
            say(f"        paused by the user{' until ' + until if until else ''}; indexing goes on; "
                f"`shoal resume --folder {f['id']}` to sync again")
        if f.get("resynced"):
            say(f"        resynced from the hub's current files at {f['resynced']} (this device was away "
                "longer than the hub keeps history)")
        for e in f["errors"][:10]:
            say(f"        error ({e['kind']}): {e['path']}: {e['message']}")
        if len(f["errors"]) > 10:
            say(f"        ... and {len(f['errors']) - 10} more errors")


def cmd_conflicts(args) -> int:
    if args.action == "resolve":
        return _resolve_conflicts(args)
    if args.path or args.keep or args.all:
        raise UsageError("PATH, --keep and --all go with `shoal conflicts resolve`")
    device = _device(args)
    try:
        rows = device.store.conflicts()
    finally:
        device.close()
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        say("no conflicts")
    for c in rows:
        other = c["conflict_path"] or "(older version in the trash)"
        say(f"{c['folder']}: {c['path']}  <->  {other}   (kept: {c['winner_device'] or '?'}, "
              f"other: {c['loser_device'] or '?'})")
    return 0


def _locate(config, path: str | None, folder_id: str | None) -> tuple[str | None, str | None]:
    """(folder id, folder-relative path) of PATH as given on the command line: a path on the
    disk inside a folder, or relative to --folder (or to the only folder)."""
    if path is None:
        return folder_id, None
    absolute = Path(os.path.abspath(os.path.expanduser(path)))
    for f in config.folders:
        if (folder_id is None or f.id == folder_id) and absolute.is_relative_to(f.path) and absolute != f.path:
            return f.id, absolute.relative_to(f.path).as_posix()
    rel = os.path.normpath(path).replace(os.sep, "/")
    if os.path.isabs(path) or rel == "." or rel.startswith("../") or rel == "..":
        raise UsageError(f"{path} is not in a synced folder")
    return folder_id, rel


def _when(text: str | None):
    if text is None:
        return None
    from datetime import datetime

    from shoal.core.durations import parse_when

    try:
        return parse_when(text, datetime.now().astimezone())
    except ValueError as e:
        raise UsageError(str(e)) from None


def cmd_log(args) -> int:
    from shoal.sync.engine import SyncEngine  # psycopg
    from shoal.sync.history import History, change_kind, entry_json

    device = _device(args)
    try:
        folder_id, path = _locate(device.config, args.path, args.folder)
        history = History(SyncEngine(device.config, device.store, device.open_hub))
        entries = history.log(folder_id, path, args.limit)
    finally:
        device.close()
    if args.json:
        _print_json([entry_json(e) for e in entries])
        return 0
    if not entries:
        say("no versions on the hub")
    for e in entries:
        ch = e.change
        size = "-" if ch.deleted else human_bytes(ch.size)
        line = (f"v{ch.version}  {e.time.astimezone().strftime('%Y-%m-%d %H:%M:%S')}  {ch.device_name or '?'}  "
                f"{size}  {'-' if ch.deleted else ch.sha256[:12]}  {change_kind(ch)}")
        say(line + ("" if path else f"  {ch.path}"))
    return 0


def _restore(args, **kw) -> int:
    """`shoal restore` and `shoal revert`: through the daemon when one runs (it owns the cycles),
    else here. Prints what was (or, with --dry-run, would be) restored."""
    from shoal.daemon.control import daemon_client
    path = _config_path(args)
    client = daemon_client(path)
    if client is not None:
        request = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in kw.items()}
        reply = client.request({"op": "restore", **request}, timeout=None)
        if not reply.get("ok"):
            say(f"shoal: {reply.get('error') or 'the restore did not complete'}", file=sys.stderr)
            return int(reply.get("exit_code", 1))
        report = reply["report"]
    else:
        from shoal.sync.engine import SyncEngine  # psycopg
        from shoal.sync.history import History

        device = _device(args)
        try:
            with TerminalProgressBar("restore") as progress:
                engine = SyncEngine(device.config, device.store, device.open_hub, progress=progress)
                report = History(engine).restore(**kw).as_json()
        finally:
            device.close()
    if args.json:
        _print_json(report)
    else:
        would = "would be " if report["dry_run"] else ""
        for r in report["restored"]:
            say(f"{report['folder']}: {r['path']}: {would}restored to v{r['version']} ({r['time']})")
        for p in report["removed"]:
            say(f"{report['folder']}: {p}: {would}moved to the trash (it did not exist then)")
        for p in report["left_alone"]:
            say(f"{report['folder']}: {p}: left alone (another device changed it since)")
        if not (report["restored"] or report["removed"] or report["left_alone"]):
            say(f"{report['folder']}: nothing to restore")
    for p in report["failed"]:
        say(f"shoal: {report['folder']}: {p}: could not be restored (see `shoal status`)", file=sys.stderr)
    return 1 if report["failed"] else 0


def cmd_restore(args) -> int:
    if (args.version is None) == (args.at is None):
        raise UsageError("say which version: --version V or --at TIME")
    if args.path is None and args.version is not None:
        raise UsageError("--version needs a PATH (a whole folder is restored --at a time)")
    device = _device(args)
    try:
        folder_id, rel = _locate(device.config, args.path, args.folder)
    finally:
        device.close()
    return _restore(args, folder_id=folder_id, path=rel, version=args.version, at=_when(args.at),
                    dry_run=args.dry_run)


def cmd_revert(args) -> int:
    return _restore(args, folder_id=args.folder, device=args.device, since=_when(args.since),
                    dry_run=args.dry_run)


def _resolve_conflicts(args) -> int:
    from shoal.daemon.control import daemon_client
    from shoal.sync.engine import SyncEngine  # psycopg
    from shoal.sync.resolve import resolve_conflicts

    if args.keep is None or (args.path is None) == (not args.all):
        raise UsageError("shoal conflicts resolve PATH --keep mine|theirs|both (or --all instead of PATH)")
    client = daemon_client(_config_path(args))
    device = _device(args)
    try:
        folder_id, rel = _locate(device.config, args.path, args.folder)
        engine = SyncEngine(device.config, device.store, device.open_hub)
        done = resolve_conflicts(engine, rel, args.keep, folder_id=folder_id, sync=client is None)
    finally:
        device.close()
    for folder, path, kept in done.kept:
        say(f"{folder}: {path}: resolved, kept {kept if kept != 'path' else 'the version at the path'}")
    return client.sync_now(None, False) if client is not None else 0


def cmd_devices(args) -> int:
    device = _device(args)
    try:
        rows, usage = devices_report(device)
    finally:
        device.close()
    if args.json:
        _print_json(rows)
        return 0
    say(usage_line(usage))
    for line in device_lines(rows):
        say(line)
    return 0


def usage_line(u: dict) -> str:
    """`space S: N changes (quota M), B stored (quota Q)`, as `shoal devices` prints it."""
    def bound(value, fmt) -> str:
        return "no quota" if value is None else f"quota {fmt(value)}"
    return printable(f"space {u['space']}: {u['changes']} changes ({bound(u['max_changes'], str)}), "
                     f"{human_bytes(u['bytes'])} stored ({bound(u['max_bytes'], human_bytes)})")


def device_lines(rows: list[dict]) -> list[str]:
    """The lines `shoal devices` prints, one per device, every hub-supplied text escaped
    (a device name is whatever that device registered). Raises nothing."""
    lines = []
    for r in rows:
        flag = "  SILENT > 1 day" if r["silent"] else ""
        lines.append(printable(
            f"{r['name']:<20} push {r['last_push_at'] or 'never'}  pull {r['last_pull_at'] or 'never'}"
            f"  behind {r['behind']}{flag}" + (f"  last error: {r['last_error']}" if r["last_error"] else "")))
    return lines


def cmd_dupes(args) -> int:
    device = _device(args)
    try:
        from shoal.sync.sealed import readable_places  # psycopg

        hub = device.open_hub()
        try:
            rows = hub.dupes()
            for r in rows:
                r["places"] = readable_places(hub, device.config.folders, device.store, r["places"])
        finally:
            hub.close()
    finally:
        device.close()
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        say("no duplicate contents")
    for r in rows:
        say(f"{human_bytes(r['size'])} x{len(r['places'])}: " + ", ".join(r["places"]))
    return 0


def cmd_config(args) -> int:
    """Validate the file; then its hub URL's safety (config.hub_security_notices): a password
    in a file others can read is refused (exit 2: the secret is already exposed, and running
    on would keep it so); a remote hub without verified TLS is a warning (exit 0: the hub may
    sit on a trusted network, and refusing would stop a working setup; doctor FAILs it)."""
    path = _config_path(args)
    config = load_config(path)
    notices = hub_security_notices(config)
    refused = [n.message for n in notices if n.level == "refuse"]
    for n in notices:
        if n.level != "refuse":
            say(f"warning: {n.message}", file=sys.stderr)
    if refused:
        raise ConfigError("\n".join(refused), problems=refused, path=str(path))
    say(f"{path}: ok")
    return 0


def _duration(text: str) -> float:
    seconds = _duration_or_zero(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be longer than 0s")
    return seconds


def _duration_or_zero(text: str) -> float:
    from shoal.core.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _folder_specs(specs: list[str]) -> list[tuple[str, str]]:
    folders = []
    for spec in specs:
        fid, sep, fpath = spec.partition("=")
        if not sep or not fid or not fpath:
            raise UsageError(f"--folder takes ID=PATH, not {spec!r}")
        folders.append((fid, fpath))
    return folders


def cmd_join(args) -> int:
    from shoal.ops.join import join

    done = join(args.token, _config_path(args), folders=_folder_specs(args.folder),
                device_name=args.device_name, now=time.time(), passphrase_file=args.passphrase_file)
    setup = done.setup
    say(f"joined hub {done.hub_id} as device {setup.device_name} ({setup.device_id}); config in "
        f"{done.config_path}, store in {setup.state_dir}")
    for folder_id, reason in setup.folder_problems:
        say(f"shoal: folder {folder_id}: {reason}", file=sys.stderr)
    if setup.not_registered:
        say(f"shoal: not registered at the hub yet ({setup.not_registered}); it registers on the first sync",
            file=sys.stderr)
    for fid in done.not_offered:
        say(f"note: the hub has no folder {fid} yet; it starts with this device")
    if done.offered_unmapped:
        say("the hub also has: " + ", ".join(done.offered_unmapped) + " (add them with --folder ID=PATH "
            "next time, or in the config file)")
    for fid in done.encrypted:
        say(f"folder {fid}: end-to-end encrypted (the passphrase opens its key)")
    say("now run `shoal run`, or `shoal service install` to keep it running")
    return 0


def cmd_folder(args) -> int:
    from shoal.ops.folder_keys import change_passphrase  # psycopg

    device = _device(args)
    try:
        change_passphrase(device, args.folder_id, args.new_file)
    finally:
        device.close()
    say(f"folder {args.folder_id}: passphrase changed (its key is re-wrapped; no content was re-encrypted); "
        f"{device.config.path} now reads it from {args.new_file.expanduser().resolve()}")
    say("the other devices need the new passphrase in their passphrase files before they next start")
    return 0


def _hub_admin(args):
    """Connect as the hub owner: `--url` if given, else the config's hub. Returns (connection,
    its URL, where invited devices reach the hub or why they cannot)."""
    from shoal.hub import admin as hub_admin
    from shoal.hub.client import connect  # psycopg
    from shoal.hub.schema import ensure_schema

    if args.url:
        return connect(args.url), args.url, hub_admin.invite_target(None, None, args.url)
    device = _device(args)
    try:
        hub = device.config.hub
        url, password = device.hub_url(), read_hub_password(hub)
        target = (hub_admin.invite_target(hub, device.config.state_dir)
                  if args.action == "add-device" else "")
    finally:
        device.close()
    conn = connect(url, password)
    if hub.url == "embedded" and args.action != "init":
        # This device's own hub: set it up now if its daemon has not yet (it just started).
        try:
            ensure_schema(conn)
        except BaseException:
            conn.close()
            raise
    return conn, url, target


PASSWORD_FILE_HINT = "~/.config/shoal/hub-password"


def _print_new_device(d, *, qr: bool) -> None:
    from shoal.hub.admin import qr_text

    if d.token:
        say(f"invite for device {d.name!r} (space {d.space}), valid once, until {d.expires}:")
        say(f"  shoal join {d.token}")
        if qr:
            print(qr_text(f"shoal join {d.token}"))
        say("On the new device run that line (add --folder ID=PATH for each folder to sync).")
        say("Or set the device up by hand:")
    else:
        say(f"no invite: {d.no_invite_because}")
    say(f"created hub login {d.role} for device {d.name!r}")
    say(f"  url:      {d.url}")
    say(f"  password: {d.password}")
    say("The password is shown only this once. On the device, store it in a file only you can read:")
    say("  mkdir -p ~/.config/shoal")
    say(f"  (umask 077; printf '%s' '{d.password}' > {PASSWORD_FILE_HINT})")
    say("and put these lines in the device's config.yaml:")
    say("  hub:")
    say(f"    url: {d.url}")
    say(f"    password_file: {PASSWORD_FILE_HINT}")
    say("The server's pg_hba.conf must let this role connect with scram-sha-256 "
        "(and, over a network, TLS: add sslmode=verify-full to the URL).")


def cmd_hub(args) -> int:
    from shoal.hub import admin as hub_admin
    from shoal.hub.schema import hub_init

    if args.action not in ("init", "gc", "stats"):
        if not args.name:
            what = "SPACE" if args.action == "quota" else "device NAME"
            raise UsageError(f"shoal hub {args.action} needs a {what}")
        if args.action != "quota":
            hub_admin.check_device_name(args.name)  # refuse a bad name before connecting anywhere
    conn, url, target = _hub_admin(args)
    try:
        if args.action == "init":
            hub_id, applied = hub_init(conn)
            say(f"hub {hub_id}: " + (f"applied migrations {applied}" if applied else "schema up to date"))
        elif args.action == "add-device":
            d = hub_admin.new_device(conn, args.name, target, hub_url_for_devices=url, space=args.space,
                                     expires_in=args.expires)
            if args.json:
                print(json.dumps({"invite": d.token, "expires": d.expires, "device": d.name, "login": d.role,
                                  "space": d.space, "url": d.url, "password": d.password,
                                  "no_invite_because": d.no_invite_because}))
            else:
                _print_new_device(d, qr=args.qr)
        elif args.action == "revoke-device":
            role, terminated, remaining = hub_admin.revoke_device(conn, args.name)
            say(f"revoked hub login {role}: it can no longer log in or act as its device; "
                f"{terminated} open session(s) terminated")
            if remaining:
                say(f"{remaining} session(s) of {role} could not be terminated; they can no longer "
                    "call the hub API (a superuser can end them with pg_terminate_backend)")
        elif args.action in ("gc", "stats"):
            _hub_gc_or_stats(args, conn)
        else:
            u = hub_admin.set_quota(conn, args.name, max_changes=args.changes, max_bytes=args.bytes)
            say(f"space {u['space']}: {u['changes']} changes (quota {u['max_changes'] or 'none'}), "
                f"{u['bytes']} bytes (quota {u['max_bytes'] or 'none'})")
    finally:
        conn.close()
    return 0


def _hub_gc_or_stats(args, conn) -> None:
    from shoal.hub import gc

    if args.action == "stats":
        stats = gc.hub_stats(conn)
        if args.json:
            _print_json(stats)
            return
        say(f"hub: {stats['hub']['blocks']} blocks, {human_bytes(stats['hub']['bytes'])}")
        for s in stats["spaces"]:
            say(f"space {s['space']}: {s['contents']} contents, {s['blocks']} blocks, "
                f"{human_bytes(s['bytes_stored'])} stored, {human_bytes(s['bytes_referenced'])} referenced by files")
            for f in s["folders"]:
                say(f"  folder {f['folder_id']}: {f['files']} files, {f['versions']} versions, "
                    f"{f['tombstones']} deleted, {human_bytes(f['bytes_referenced'])} referenced, "
                    f"oldest change kept {f['oldest_change'] or 'none'}")
        return
    keep = args.keep
    if keep is None:
        keep = gc.DEFAULT_KEEP if args.url else load_config(_config_path(args)).hub.keep_versions
    report = gc.collect_garbage(conn, keep=keep, grace=gc.DEFAULT_GRACE if args.grace is None else args.grace,
                                dry_run=args.dry_run)
    if args.json:
        _print_json(report.as_json())
    else:
        say(f"hub gc: {report.summary()}")


def cmd_service(args) -> int:
    from shoal.ops.setup import install_service, uninstall_service
    if args.action == "install":
        explicit = bool(getattr(args, "config", None) or os.environ.get("SHOAL_CONFIG"))
        lines = install_service(_config_path(args), explicit)
    else:
        lines = uninstall_service()
    for line in lines:
        say(line)
    return 0


def cmd_run(args) -> int:
    from shoal.daemon.loop import run_daemon  # watchdog, psycopg

    return run_daemon(_config_path(args), debug=args.debug)


def cmd_doctor(args) -> int:
    from shoal.ops.doctor import run_doctor
    return run_doctor(_config_path(args))


_COMMANDS = {
    "init": cmd_init, "scan": cmd_scan, "sync": cmd_sync, "status": cmd_status,
    "pause": cmd_pause, "resume": cmd_resume,
    "folder": cmd_folder, "log": cmd_log, "restore": cmd_restore, "revert": cmd_revert, "conflicts": cmd_conflicts, "devices": cmd_devices, "dupes": cmd_dupes, "config": cmd_config,
    "hub": cmd_hub, "service": cmd_service, "run": cmd_run, "doctor": cmd_doctor, "join": cmd_join,
}
