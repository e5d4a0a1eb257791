"""Installing shoal as a background service: systemd user unit, launchd agent, Termux services.

This module owns `shoal service install` / `uninstall`: choosing the service manager of this
platform, rendering the templates shipped in `shoal/packaging/`, writing them where the service
manager looks for them, and running the commands that enable or disable the service. It never
raises because a service manager's command is missing or fails: the lines it returns say what
was done and what to run by hand.

Templates (`src/shoal/packaging/`) hold `{name}` placeholders. Each is replaced in one pass by
plain text substitution (never `str.format`, so other braces in a template are safe, and a value
that itself contains `{...}` is never substituted again). Values are already quoted for the
file they go into:

    {exec}         the shoal command, e.g. default_exec_argv(): systemd-quoted words
                   (shoal.service), a shell word list (termux-run), or one plist <string>
                   element per word (org.shoal.agent.plist)
    {config_args}  " --config PATH", quoted likewise (plist: one more element per word), or ""
    {log_dir}      launchd: the folder for the agent's stdout/stderr, <state_dir>/logs
    {prefix}       Termux: the Termux prefix as is (shebang lines)
    {sh_prefix}    Termux: the Termux prefix, shell-quoted

Every template contains MARKER; a file at a target path without it is someone else's and is
never overwritten or removed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from xml.sax.saxutils import escape as _xml_escape

from shoal.errors import ShoalError, UsageError
from shoal.platform import TERMUX_USR, is_android_app_prefix, is_termux, write_file_atomic

MARKER = "Installed by shoal"
PLATFORMS = ("systemd", "launchd", "termux")
SYSTEMD_UNIT = "shoal.service"
LAUNCHD_LABEL = "org.shoal.agent"
TERMUX_SERVICE = "shoal"
DEFAULT_TERMUX_PREFIX = Path(TERMUX_USR)

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_SYSTEMD_SAFE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
_COMMAND_TIMEOUT = 60  # seconds

Run = Callable[..., "subprocess.CompletedProcess[str]"]


@dataclass(frozen=True)
class InstalledFile:
    """One file of a service installation: where it goes, what it holds, its permission bits."""

    path: Path
    content: str
    mode: int


def detect_platform(env: Mapping[str, str], sys_platform: str) -> str:
    """Return "termux", "launchd" or "systemd" for this environment.

    Raises UsageError when the platform has no supported service manager.
    """
    if is_termux(env):
        return "termux"
    if sys_platform == "darwin":
        return "launchd"
    if sys_platform.startswith("linux"):
        return "systemd"
    raise UsageError(f"no service manager support for {sys_platform}")


def env_paths(env: Mapping[str, str]) -> dict[str, Path]:
    """The keyword paths for plan_install/install/uninstall taken from the environment.

    XDG_CONFIG_HOME (only if absolute, as the XDG spec says) and the Termux PREFIX.
    Raises nothing.
    """
    paths: dict[str, Path] = {}
    xdg = env.get("XDG_CONFIG_HOME", "")
    if xdg and os.path.isabs(xdg):
        paths["xdg_config_home"] = Path(xdg)
    if is_android_app_prefix(env.get("PREFIX", "")):
        paths["termux_prefix"] = Path(env["PREFIX"])
    return paths


def default_exec_argv(executable: str | None = None) -> list[str]:
    """The command that starts shoal, for a service file.

    The absolute path of the `shoal` script next to the Python interpreter (`executable`,
    default sys.executable) if there is one, else `[python, "-m", "shoal"]`. Raises nothing.
    """
    python = os.path.abspath(executable or sys.executable)
    script = os.path.join(os.path.dirname(python), "shoal")
    if os.path.isfile(script) and os.access(script, os.X_OK):
        return [script]
    return [python, "-m", "shoal"]


def plan_install(
    platform: str,
    home: Path,
    exec_argv: list[str],
    config_path: Path | None,
    state_dir: Path,
    *,
    xdg_config_home: Path | None = None,
    termux_prefix: Path = DEFAULT_TERMUX_PREFIX,
) -> list[InstalledFile]:
    """Where each service file of `platform` goes and what it contains; touches nothing.

    The service runs `exec_argv + ["run"]`, plus `--config config_path` when one is given.
    Raises UsageError for an unknown platform, an exec_argv that does not start with an
    absolute path, or a path holding a control character (no service file can carry it).
    """
    if not exec_argv or not os.path.isabs(exec_argv[0]):
        first = exec_argv[0] if exec_argv else ""
        raise UsageError(f"the service needs the absolute path of shoal, not {first!r}")
    config_words = ["--config", os.path.abspath(config_path)] if config_path is not None else []
    for word in [*exec_argv, *config_words, str(state_dir), str(termux_prefix)]:
        if any(ord(c) < 0x20 or c == "\x7f" for c in word):
            raise UsageError(f"no service file can hold a control character: {word!r}")

    if platform == "systemd":
        values = {
            "exec": " ".join(_systemd_word(w) for w in exec_argv),
            "config_args": "".join(" " + _systemd_word(w) for w in config_words),
        }
        return [
            InstalledFile(
                _systemd_unit_path(home, xdg_config_home), _render("shoal.service", values), 0o644
            )
        ]
    if platform == "launchd":
        values = {
            "exec": "\n".join(_plist_string(w) for w in exec_argv),
            "config_args": "".join("\n" + _plist_string(w) for w in config_words),
            "log_dir": _xml_escape(os.path.abspath(_log_dir(state_dir))),
        }
        plist = _render("org.shoal.agent.plist", values)
        return [InstalledFile(_launchd_plist_path(home), plist, 0o644)]
    if platform == "termux":
        values = {
            "exec": shlex.join(exec_argv),
            "config_args": (" " + shlex.join(config_words)) if config_words else "",
            "prefix": str(termux_prefix),
            "sh_prefix": shlex.quote(str(termux_prefix)),
        }
        service_dir = _termux_service_dir(termux_prefix)
        return [
            InstalledFile(service_dir / "run", _render("termux-run", values), 0o755),
            InstalledFile(service_dir / "log" / "run", _render("termux-log-run", values), 0o755),
            InstalledFile(_termux_boot_path(home), _render("termux-boot", values), 0o755),
        ]
    raise UsageError(f"unknown service platform {platform!r} (one of {', '.join(PLATFORMS)})")


def install(
    platform: str,
    home: Path,
    exec_argv: list[str],
    config_path: Path | None,
    state_dir: Path,
    *,
    run: Run = subprocess.run,
    xdg_config_home: Path | None = None,
    termux_prefix: Path = DEFAULT_TERMUX_PREFIX,
) -> list[str]:
    """Write the service files of `platform`, enable and start the service; return what was done.

    Files are written atomically. A file of an earlier shoal install (it holds MARKER) is
    replaced; a file without MARKER is left alone and nothing at all is written. The activation
    commands go through `run` (subprocess.run's signature); when one is missing or fails, the
    returned lines say what to run by hand instead of raising.
    Raises UsageError for a foreign file at a target path (or what plan_install raises), and
    ShoalError when a file cannot be written.
    """
    files = plan_install(
        platform, home, exec_argv, config_path, state_dir,
        xdg_config_home=xdg_config_home, termux_prefix=termux_prefix,
    )
    previous = {f.path: _read_existing(f.path) for f in files}
    for f in files:
        old = previous[f.path]
        if old is not None and old != f.content and MARKER not in old:
            raise UsageError(
                f"{f.path} exists and was not installed by shoal; move it away, then run "
                "`shoal service install` again",
                path=str(f.path),
            )

    lines: list[str] = []
    changed = False
    for f in files:
        old = previous[f.path]
        if old == f.content and _mode_of(f.path) == f.mode:
            lines.append(f"unchanged {f.path}")
            continue
        _write_atomic(f)
        changed = changed or old is not None
        lines.append(f"{'replaced' if old is not None else 'installed'} {f.path}")

    unit = files[0].path
    if platform == "systemd":
        commands = [
            (["systemctl", "--user", "daemon-reload"], True),
            (["systemctl", "--user", "enable", "--now", SYSTEMD_UNIT], True),
        ]
        if changed:  # a running daemon keeps the old unit's command line until restarted
            commands.append((["systemctl", "--user", "restart", SYSTEMD_UNIT], True))
        lines += _run_commands(run, commands)
        lines.append("logs: journalctl --user -u shoal; to keep shoal running while you are "
                     "logged out: loginctl enable-linger")
    elif platform == "launchd":
        log_dir = _log_dir(state_dir)
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ShoalError(f"cannot create {log_dir}: {e.strerror}", path=str(log_dir)) from e
        commands = [(["launchctl", "load", "-w", str(unit)], True)]
        if previous[unit] is not None:  # loaded already: load it again to pick up the new file
            commands.insert(0, (["launchctl", "unload", str(unit)], False))
        lines += _run_commands(run, commands)
        lines.append(f"logs: {log_dir}")
    else:
        commands = [(["sv-enable", TERMUX_SERVICE], True)]
        if changed:  # runsv keeps running the old script until the service restarts
            commands.append((["sv", "restart", TERMUX_SERVICE], True))
        lines += _run_commands(run, commands)
        lines.append("needs termux-services (pkg install termux-services, then restart Termux); "
                     "starts after a reboot with the Termux:Boot app (open it once); "
                     f"logs: {termux_prefix}/var/log/sv/shoal/current")
    return lines


def uninstall(
    platform: str,
    home: Path,
    *,
    run: Run = subprocess.run,
    xdg_config_home: Path | None = None,
    termux_prefix: Path = DEFAULT_TERMUX_PREFIX,
) -> list[str]:
    """Stop and disable the service of `platform`, remove the files shoal installed; return lines.

    Only files holding MARKER are removed; any other file at a target path is left and named
    in the lines. When no shoal file is installed, no command is run. A missing or failing
    service manager command is reported in the lines, and the files are removed all the same.
    Raises UsageError for an unknown platform and ShoalError when a file cannot be removed.
    """
    targets = _target_paths(platform, home, xdg_config_home, termux_prefix)
    lines: list[str] = []
    ours: list[Path] = []
    for path in targets:
        old = _read_existing(path)
        if old is None:
            continue
        if MARKER in old:
            ours.append(path)
        else:
            lines.append(f"left {path}: it was not installed by shoal")
    if not ours:
        return lines + [f"no shoal service is installed for {platform}"]

    if platform == "systemd":
        disable = ["systemctl", "--user", "disable", "--now", SYSTEMD_UNIT]
        lines += _run_commands(run, [(disable, True)])
    elif platform == "launchd":
        lines += _run_commands(run, [(["launchctl", "unload", "-w", str(targets[0])], True)])
    else:
        lines += _run_commands(run, [(["sv", "down", TERMUX_SERVICE], True)])

    for path in ours:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            raise ShoalError(f"cannot remove {path}: {e.strerror}", path=str(path)) from e
        lines.append(f"removed {path}")

    if platform == "systemd":
        # What `disable` removes, in case systemctl could not run: the enablement symlink.
        wants = targets[0].parent / "default.target.wants" / SYSTEMD_UNIT
        with contextlib.suppress(OSError):
            if os.path.join(wants.parent, os.readlink(wants)) == str(targets[0]):
                wants.unlink()
        lines += _run_commands(run, [(["systemctl", "--user", "daemon-reload"], True)])
    elif platform == "termux":
        _prune_termux_service_dir(_termux_service_dir(termux_prefix))
    return lines


# --- paths -----------------------------------------------------------------------------------


def _systemd_unit_path(home: Path, xdg_config_home: Path | None) -> Path:
    config_home = home / ".config"
    if xdg_config_home is not None and xdg_config_home.is_absolute():
        config_home = xdg_config_home
    return config_home / "systemd" / "user" / SYSTEMD_UNIT


def _launchd_plist_path(home: Path) -> Path:
    return home / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"


def _termux_service_dir(prefix: Path) -> Path:
    return prefix / "var" / "service" / TERMUX_SERVICE


def _termux_boot_path(home: Path) -> Path:
    return home / ".termux" / "boot" / TERMUX_SERVICE


def _log_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "logs"


def _target_paths(
    platform: str, home: Path, xdg_config_home: Path | None, prefix: Path
) -> list[Path]:
    if platform == "systemd":
        return [_systemd_unit_path(home, xdg_config_home)]
    if platform == "launchd":
        return [_launchd_plist_path(home)]
    if platform == "termux":
        service_dir = _termux_service_dir(prefix)
        return [service_dir / "run", service_dir / "log" / "run", _termux_boot_path(home)]
    raise UsageError(f"unknown service platform {platform!r} (one of {', '.join(PLATFORMS)})")


# --- rendering -------------------------------------------------------------------------------


def _render(template_name: str, values: Mapping[str, str]) -> str:
    template = (resources.files("shoal") / "packaging" / template_name).read_text(encoding="utf-8")
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def _systemd_word(word: str) -> str:
    """One word of a systemd command line: specifiers (%) and variables ($) are doubled,
    anything beyond plain path characters is double-quoted with C-style escapes."""
    escaped = word.replace("%", "%%").replace("$", "$$")
    if _SYSTEMD_SAFE.fullmatch(word):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _plist_string(word: str) -> str:
    return f"\t\t<string>{_xml_escape(word)}</string>"


# --- files -----------------------------------------------------------------------------------


def _read_existing(path: Path) -> str | None:
    """The text at `path`, or None if there is no file. Raises UsageError for a directory."""
    if path.is_dir():
        raise UsageError(f"{path} is a directory, not a service file; move it away", path=str(path))
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ShoalError(f"cannot read {path}: {e.strerror}", path=str(path)) from e


def _mode_of(path: Path) -> int | None:
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return None


def _write_atomic(f: InstalledFile) -> None:
    """Write to a temporary file beside the target, fsync, then rename it into place."""
    try:
        f.path.parent.mkdir(parents=True, exist_ok=True)
        write_file_atomic(f.path, f.content, mode=f.mode)
    except OSError as e:
        raise ShoalError(f"cannot write {f.path}: {e.strerror}", path=str(f.path)) from e


def _prune_termux_service_dir(service_dir: Path) -> None:
    """Remove what runit left in shoal's service dir (supervise/, down), then the empty dirs."""
    for d in (service_dir / "log", service_dir):
        with contextlib.suppress(OSError):
            shutil.rmtree(d / "supervise")
        with contextlib.suppress(OSError):
            (d / "down").unlink()
        with contextlib.suppress(OSError):
            d.rmdir()  # only if empty: a file of the user's keeps the dir


# --- commands --------------------------------------------------------------------------------


def _run_commands(run: Run, commands: list[tuple[list[str], bool]]) -> list[str]:
    """Run each (argv, required) in turn. A failed optional command is noted and skipped; a
    failed required one stops the rest, and the line says what to run by hand."""
    lines: list[str] = []
    for i, (argv, required) in enumerate(commands):
        shown = shlex.join(argv)
        try:
            result = run(
                argv, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT, check=False
            )
        except FileNotFoundError:
            problem = f"{argv[0]} is not installed"
        except (OSError, subprocess.SubprocessError) as e:
            problem = str(e)
        else:
            if result.returncode == 0:
                lines.append(f"ran {shown}")
                continue
            output = ((result.stderr or "") + (result.stdout or "")).strip().splitlines()
            problem = f"exit status {result.returncode}" + (f": {output[-1]}" if output else "")
        if not required:
            lines.append(f"ignored: {shown} failed ({problem})")
            continue
        by_hand = " && ".join(shlex.join(a) for a, _ in commands[i:])
        lines.append(f"could not run {shown} ({problem}); run by hand: {by_hand}")
        break
    return lines
