"""Configuration: the YAML file -> frozen dataclasses, and the default paths per platform.

Owns SPEC "Paths" and "Configuration (YAML)": where the config file and the state dir live
(including Termux), reading and validating the file (every problem at once, each as
`<file>:<line>: <key path>: <what is wrong>`), reading the hub password from the place the
file names, and writing a new config file for `shoal init`.

Values are read from the YAML node tree, never through PyYAML's implicit typing, so that
`name: no`, `id: 2024` or `interval: 1:30` mean what they look like (or are refused) instead
of turning into False, 2024 or 90.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from shoal.core.conditions import HOURS_HINT, RunConditions, parse_hours
from shoal.core.durations import DURATION_HINT, parse_duration
from shoal.core.rates import RATE_HINT, parse_rate
from shoal.errors import ConfigError, ShoalError, UsageError
from shoal.model import ConflictPolicy, FolderMode
from shoal.platform import is_termux, write_file_atomic

if TYPE_CHECKING:
    import platformdirs

MODES = tuple(mode.value for mode in FolderMode)
CONFLICT_POLICIES = tuple(policy.value for policy in ConflictPolicy)
LOG_LEVELS = ("debug", "info", "warning", "error")

APP_NAME = "shoal"
CONFIG_ENV = "SHOAL_CONFIG"


@dataclass(frozen=True)
class DeviceConfig:
    name: str


@dataclass(frozen=True)
class HubConfig:
    url: str = "embedded"  # "embedded" or a libpq URL
    password_env: str | None = None
    password_file: Path | None = None
    url_line: int | None = field(default=None, compare=False)  # where the file set hub.url
    serve_listen: str | None = None  # hub.serve.listen, HOST:PORT (valid: parse_listen)
    keep_versions: float = 30 * 86400.0  # seconds; the daily GC of an embedded hub keeps versions this long


@dataclass(frozen=True)
class FolderConfig:
    id: str
    path: Path  # expanded (~), absolute
    mode: FolderMode = FolderMode.SEND_RECEIVE
    ignore: tuple[str, ...] = ()
    passphrase_file: Path | None = None  # encryption.passphrase_file: the folder is end-to-end encrypted
    passphrase_line: int | None = field(default=None, compare=False)  # where the file set it
    watch: bool = True  # false: no file events, periodic rescans only (shared storage that sends none)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", FolderMode(self.mode))  # ValueError for an unknown mode

    @property
    def encrypted(self) -> bool:
        return self.passphrase_file is not None


@dataclass(frozen=True)
class SyncConfig:
    interval: float = 300.0  # seconds
    debounce: float = 1.0  # seconds
    conflict: ConflictPolicy = ConflictPolicy.KEEP_BOTH
    trash_days: int = 30
    max_upload_rate: float = 0.0  # bytes per second; 0 = unlimited
    max_download_rate: float = 0.0
    when: RunConditions = field(default_factory=RunConditions)  # sync.when: run conditions

    def __post_init__(self) -> None:
        object.__setattr__(self, "conflict", ConflictPolicy(self.conflict))


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"


@dataclass(frozen=True)
class Config:
    path: Path  # the file it was loaded from
    device: DeviceConfig
    state_dir: Path
    hub: HubConfig = field(default_factory=HubConfig)
    folders: tuple[FolderConfig, ...] = ()
    sync: SyncConfig = field(default_factory=SyncConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def folder(self, folder_id: str) -> FolderConfig | None:
        for f in self.folders:
            if f.id == folder_id:
                return f
        return None


# ---------------------------------------------------------------------------------------------
# Paths


def _platform_dirs(env: Mapping[str, str]) -> platformdirs.PlatformDirs:
    # platformdirs picks its Android layout (app-private dirs outside $HOME) when SHELL and
    # PREFIX are unset, as under some service runners; SPEC wants the $HOME layout on Termux.
    import platformdirs  # here, not at start: a config that names its paths never needs it

    if is_termux(env):
        from platformdirs.unix import Unix

        return Unix(APP_NAME)
    return platformdirs.PlatformDirs(APP_NAME)


def default_config_path(env: Mapping[str, str] = os.environ) -> Path:
    """The config file to use when --config is not given: $SHOAL_CONFIG, else the platform's
    user config dir + config.yaml. Raises nothing."""
    from_env = env.get(CONFIG_ENV)
    if from_env:
        return Path(os.path.expanduser(from_env))
    return Path(_platform_dirs(env).user_config_dir) / "config.yaml"


def default_state_dir(env: Mapping[str, str] = os.environ) -> Path:
    """The state dir used when the config file sets none: the platform's user data dir.
    Raises nothing."""
    return Path(_platform_dirs(env).user_data_dir)


def resolve_config_path(cli_value: str | None, env: Mapping[str, str] = os.environ) -> Path:
    """The config file to use: `--config` beats $SHOAL_CONFIG beats the default. Raises nothing."""
    if cli_value:
        return Path(os.path.expanduser(cli_value))
    return default_config_path(env)


# ---------------------------------------------------------------------------------------------
# Loading and validation


def load_config(path: Path) -> Config:
    """Read and validate the config file at `path`.

    Raises ConfigError when the file is missing, unreadable, not UTF-8, not valid YAML, or
    invalid; its `problems` lists every problem found, each `<file>:<line>: <key>: <what>`.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path} (run `shoal init`)", path=str(path)) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot read config file {path}: {reason}", path=str(path)) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        message = f"{path.name}:{line}: not valid UTF-8 text"
        raise ConfigError(message, path=str(path)) from None
    return _parse(text, path.name, path.absolute().parent, path)


def parse_config_text(text: str, filename: str, base_dir: Path) -> Config:
    """Validate config `text` as if read from `filename` (used in messages, and as Config.path).

    Relative paths in the text are resolved against `base_dir`.
    Raises ConfigError listing every problem, as load_config does.
    """
    return _parse(text, Path(filename).name, Path(os.path.abspath(base_dir)), Path(filename))


_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_FOLDER_ID_RE = re.compile(r"[A-Za-z0-9._-]+")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DEVICE_NAME_BAD = re.compile(r'[/\\:*?"<>|\x00-\x1f\x7f]')
_MAX_TRASH_DAYS = 1_000_000
_DAYS = "a whole number of days >= 0"


def _parse(text: str, shown_name: str, base_dir: Path, config_path: Path) -> Config:
    def refuse(line: int, what: str) -> ConfigError:
        return ConfigError(f"{shown_name}:{line}: invalid YAML: {what}", path=str(config_path))

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "syntax error"
        if exc.context and exc.problem and exc.context_mark is not None:
            what += f" ({exc.context} at line {exc.context_mark.line + 1})"
        raise refuse(mark.line + 1 if mark else 1, what) from None
    except yaml.YAMLError as exc:  # ReaderError: a character YAML does not allow
        line = text[: getattr(exc, "position", 0) or 0].count("\n") + 1
        raise refuse(line, getattr(exc, "reason", "unacceptable character")) from None
    except RecursionError:
        raise refuse(1, "nested too deeply") from None
    reader = _Reader(shown_name, base_dir)
    config = reader.config(root, config_path)
    if reader.problems:
        problems = [message for _line, message in sorted(reader.problems, key=lambda p: p[0])]
        raise ConfigError("\n".join(problems), problems=problems, path=str(config_path))
    assert config is not None
    return config


class _Reader:
    """Walks the YAML node tree once, building the Config and collecting every problem.

    Scalars are read as written (node.value), never through PyYAML's implicit typing.
    """

    def __init__(self, shown_name: str, base_dir: Path):
        self.shown_name = shown_name
        self.base_dir = base_dir
        self.problems: list[tuple[int, str]] = []

    def problem(self, line: int, key: str, what: str) -> None:
        self.problems.append((line, f"{self.shown_name}:{line}: {key}: {what}"))

    def section(self, node: yaml.Node | None, key: str, line: int, allowed: tuple[str, ...]) -> _Section:
        """The known entries of a mapping node; a missing or null node is an empty mapping."""
        entries: dict[str, tuple[int, yaml.Node]] = {}
        if node is not None and not _is_null(node) and not isinstance(node, yaml.MappingNode):
            self.problem(line, key, f"must be a mapping (keys: {', '.join(allowed)})")
        elif isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key_line = _line(key_node)
                name = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                shown = _shown_key(name or "")
                child = f"{key}.{shown}" if key != "top level" else shown
                if name is None:
                    self.problem(key_line, key, "keys must be plain names, not lists or mappings")
                elif key_node.tag == _MERGE_TAG:
                    self.problem(key_line, key, "YAML merge keys (<<) are not supported")
                elif name not in allowed:
                    self.problem(key_line, child, f"unknown key (allowed: {', '.join(allowed)})")
                elif name in entries:
                    self.problem(key_line, child, f"duplicate key (first on line {entries[name][0]})")
                else:
                    entries[name] = (key_line, value_node)
        return _Section(self, key, line, entries)

    def items(self, node: yaml.Node, key: str, line: int, what: str) -> list[yaml.Node]:
        if _is_null(node):
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.problem(line, key, f"must be a list of {what}")
            return []
        return list(node.value)

    def config(self, root: yaml.Node | None, config_path: Path) -> Config | None:
        top_keys = ("device", "state_dir", "hub", "folders", "sync", "log")
        top = self.section(root, "top level", _line(root) if root else 1, top_keys)
        state_dir = top.path("state_dir") or default_state_dir()
        config = Config(
            config_path,
            self.device(top.subsection("device", ("name",))),
            state_dir,
            self.hub(top.subsection("hub", ("url", "password_env", "password_file", "serve", "keep_versions"))),
            self.folders(top, state_dir),
            self.sync(top.subsection("sync", ("interval", "debounce", "conflict", "trash_days",
                                              "max_upload_rate", "max_download_rate", "when"))),
            LogConfig(level=top.subsection("log", ("level",)).choice("level", LOG_LEVELS, "info")),
        )
        return None if self.problems else config

    def device(self, device: _Section) -> DeviceConfig:
        name = device.text("name")
        if name is None:
            return DeviceConfig(name=_default_device_name())
        device.check(
            "name",
            1 <= len(name) <= 64 and not _DEVICE_NAME_BAD.search(name) and name == name.strip(" ."),
            'must be 1 to 64 characters, without / \\ : * ? " < > | or control characters, '
            "not starting or ending with a space or a dot",
        )
        return DeviceConfig(name=name)

    def hub(self, hub: _Section) -> HubConfig:
        url = hub.text("url")
        # The value is never echoed: a URL may carry a password.
        hub.check(
            "url",
            url is None or url == "embedded" or url.startswith(("postgresql://", "postgres://")) or "=" in url,
            'must be "embedded", a postgresql:// URL or a key=value connection string',
        )
        url = url or "embedded"
        password_env = hub.text("password_env")
        hub.check(
            "password_env",
            password_env is None or _ENV_NAME_RE.fullmatch(password_env) is not None,
            "must be the name of an environment variable (such as SHOAL_HUB_PASSWORD), "
            "not the password itself",
        )
        password_file = hub.path("password_file")
        if password_env is not None and password_file is not None:
            self.problem(hub.line, "hub", "set password_env or password_file, not both")
        url_line = hub.entries["url"][0] if "url" in hub.entries else None
        serve = hub.subsection("serve", ("listen",))
        listen = serve.text("listen", "HOST:PORT")
        if listen is not None:
            if parse_listen(listen) is None:
                serve.check("listen", False, "must be HOST:PORT, such as 0.0.0.0:7400, 127.0.0.1:7400 or "
                                             "[::]:7400 (port 1 to 65535)")
                listen = None
            elif url != "embedded":
                serve.check("listen", False, "only the device whose daemon owns the embedded hub serves it: "
                                             "set it only with hub.url: embedded")
                listen = None
        keep_versions = hub.duration("keep_versions", HubConfig.keep_versions, allow_zero=False)
        return HubConfig(url=url, password_env=password_env, password_file=password_file, url_line=url_line,
                         serve_listen=listen, keep_versions=keep_versions)

    def folders(self, top: _Section, state_dir: Path) -> tuple[FolderConfig, ...]:
        if not top.has("folders"):
            return ()
        line, node = top.entries["folders"]
        found: list[tuple[str, FolderConfig, int, int]] = []  # (key, folder, id line, path line)
        for index, item in enumerate(self.items(node, "folders", line, "folders (mappings with id and path)")):
            result = self.folder(item, f"folders[{index}]")
            if result is not None:
                found.append((f"folders[{index}]", *result))
        seen_ids: dict[str, int] = {}
        for position, (key, folder, id_line, path_line) in enumerate(found):
            if folder.id in seen_ids:
                what = f'duplicate folder id "{folder.id}" (also on line {seen_ids[folder.id]})'
                self.problem(id_line, f"{key}.id", what)
            seen_ids.setdefault(folder.id, id_line)
            for _, earlier, _, _ in found[:position]:
                if relation := _overlap(folder.path, earlier.path):
                    what = f'{relation} the path of folder "{earlier.id}" ({earlier.path})'
                    self.problem(path_line, f"{key}.path", what)
            if relation := _overlap(folder.path, state_dir):
                what = f"{relation} the state dir ({state_dir}); the store must not be synced"
                self.problem(path_line, f"{key}.path", what)
        return tuple(folder for _, folder, _, _ in found)

    def folder(self, node: yaml.Node, key: str) -> tuple[FolderConfig, int, int] | None:
        if not isinstance(node, yaml.MappingNode):
            self.problem(_line(node), key, "must be a mapping (keys: id, path, mode, ignore, encryption, watch)")
            return None
        before = len(self.problems)
        folder = self.section(node, key, _line(node), ("id", "path", "mode", "ignore", "encryption", "watch"))
        for required in ("id", "path"):
            if not folder.has(required):
                self.problem(folder.line, f"{key}.{required}", "is required")
        folder_id = folder.text("id")
        folder.check(
            "id",
            folder_id is None or (_FOLDER_ID_RE.fullmatch(folder_id) and folder_id not in (".", "..")),
            'must be letters, digits, "-", "_" and "." only (and not . or ..)',
        )
        path = folder.path("path")
        mode = folder.choice("mode", MODES, FolderMode.SEND_RECEIVE.value)
        ignore: list[str] = []
        if folder.has("ignore"):
            ignore_line, ignore_node = folder.entries["ignore"]
            patterns = self.items(ignore_node, f"{key}.ignore", ignore_line, "strings (gitignore patterns)")
            for index, item in enumerate(patterns):
                item_key = f"{key}.ignore[{index}]"
                if not isinstance(item, yaml.ScalarNode) or _is_null(item):
                    self.problem(_line(item), item_key, "must be a string (a gitignore pattern)")
                elif _bad_pattern(item.value):
                    self.problem(_line(item), item_key, "is not a valid gitignore pattern")
                else:
                    ignore.append(item.value)
        passphrase_file, passphrase_line = None, None
        if folder.has("encryption"):
            encryption = folder.subsection("encryption", ("passphrase_file",))
            if not encryption.has("passphrase_file"):
                self.problem(encryption.line, f"{key}.encryption.passphrase_file", "is required")
            else:
                passphrase_file = encryption.path("passphrase_file")
                passphrase_line = encryption.entries["passphrase_file"][0]
        watch = folder.flag("watch") if folder.has("watch") else True
        if len(self.problems) > before or folder_id is None or path is None:
            return None
        found = FolderConfig(folder_id, path, mode, tuple(ignore), passphrase_file, passphrase_line, watch)
        return found, folder.entries["id"][0], folder.entries["path"][0]

    def sync(self, sync: _Section) -> SyncConfig:
        trash_days = sync.text("trash_days", _DAYS)
        if trash_days is not None and not re.fullmatch(r"\s*\d{1,12}\s*", trash_days):
            sync.check("trash_days", False, f"must be {_DAYS}")
            trash_days = None
        elif trash_days is not None and int(trash_days) > _MAX_TRASH_DAYS:
            sync.check("trash_days", False, f"must be {_DAYS} and at most {_MAX_TRASH_DAYS}")
            trash_days = None
        return SyncConfig(
            interval=sync.duration("interval", 300.0, allow_zero=False),
            debounce=sync.duration("debounce", 1.0, allow_zero=True),
            conflict=sync.choice("conflict", CONFLICT_POLICIES, ConflictPolicy.KEEP_BOTH.value),
            trash_days=30 if trash_days is None else int(trash_days),
            max_upload_rate=sync.rate("max_upload_rate"),
            max_download_rate=sync.rate("max_download_rate"),
            when=self.when(sync.subsection("when", ("wifi_only", "charging_only", "min_battery", "hours"))),
        )

    def when(self, when: _Section) -> RunConditions:
        """sync.when: the run conditions (core.conditions)."""
        battery = when.text("min_battery", "a percentage from 0 to 100")
        ok = battery is not None and re.fullmatch(r"\s*\d{1,3}\s*%?\s*", battery) is not None
        min_battery = int(battery.strip().rstrip("%")) if ok else 0
        when.check("min_battery", battery is None or (ok and min_battery <= 100), "must be a percentage from 0 to 100")
        hours_text = when.text("hours", "a time window such as \"22:00-07:00\"")
        hours = None
        if hours_text is not None:
            try:
                hours = parse_hours(hours_text)
            except ValueError:
                when.check("hours", False, HOURS_HINT)
        return RunConditions(wifi_only=when.flag("wifi_only"), charging_only=when.flag("charging_only"),
                             min_battery=min_battery if min_battery <= 100 else 0, hours=hours)


class _Section:
    """The entries of one mapping (`key`, on `line`) and typed access to them.

    Each getter returns None when the entry is absent or null, and also when it is invalid,
    after recording the problem.
    """

    def __init__(self, reader: _Reader, key: str, line: int, entries: dict[str, tuple[int, yaml.Node]]):
        self.reader, self.key, self.line, self.entries = reader, key, line, entries

    def _key(self, name: str) -> str:
        return name if self.key == "top level" else f"{self.key}.{name}"

    def has(self, name: str) -> bool:
        if name not in self.entries:
            return False
        node = self.entries[name][1]
        # `path: ~` means the home directory, not "no path".
        return not _is_null(node) or (name.endswith(("path", "_dir", "_file")) and node.value == "~")

    def check(self, name: str, ok: object, what: str) -> None:
        if not ok and name in self.entries:
            self.reader.problem(self.entries[name][0], self._key(name), what)

    def subsection(self, name: str, allowed: tuple[str, ...]) -> _Section:
        line, node = self.entries.get(name, (1, None))
        return self.reader.section(node, self._key(name), line, allowed)

    def text(self, name: str, what: str = "a string") -> str | None:
        if not self.has(name):
            return None
        node = self.entries[name][1]
        if isinstance(node, yaml.ScalarNode):
            return node.value
        self.check(name, False, f"must be {what}")
        return None

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        what = f"one of {', '.join(choices)}"
        value = self.text(name, what)
        self.check(name, value is None or value in choices, f"must be {what}")
        return value if value in choices else default

    def path(self, name: str) -> Path | None:
        """`~` expanded; a relative path is taken relative to the config file's directory."""
        raw = self.text(name, "a path")
        if raw is None:
            return None
        problem = None
        if raw.strip() == "" or "\x00" in raw:
            problem = "must be a path (not empty, no NUL character)"
        else:
            try:
                expanded = os.path.expanduser(raw)
            except (ValueError, UnicodeError, KeyError):
                expanded = raw
            if expanded.startswith("~"):
                problem = f"cannot expand {raw.split('/')[0]}: no such user"
        self.check(name, problem is None, problem or "")
        if problem is not None:
            return None
        return Path(os.path.normpath(os.path.join(self.reader.base_dir, expanded)))

    def duration(self, name: str, default: float, *, allow_zero: bool) -> float:
        raw = self.text(name, DURATION_HINT.removeprefix("must be "))
        if raw is None:
            return default
        try:
            seconds = parse_duration(raw)
        except ValueError:
            self.check(name, False, DURATION_HINT)
            return default
        if seconds == 0 and not allow_zero:
            self.check(name, False, "must be longer than 0 (a duration such as 10s, 5m or 1h)")
            return default
        return seconds

    def flag(self, name: str) -> bool:
        """true or false (as YAML 1.2 spells them); False when absent."""
        raw = self.text(name, "true or false")
        value = None if raw is None else {"true": True, "false": False}.get(raw.strip().lower())
        self.check(name, raw is None or value is not None, "must be true or false")
        return bool(value)

    def rate(self, name: str) -> float:
        """Bytes per second (core.rates); 0.0 (unlimited) when absent."""
        raw = self.text(name, RATE_HINT.removeprefix("must be "))
        if raw is None:
            return 0.0
        try:
            rate = parse_rate(raw)
        except ValueError:
            self.check(name, False, RATE_HINT)
            return 0.0
        if 0 < rate < 1:
            self.check(name, False, "must be 0 (unlimited) or at least 1 byte per second")
            return 0.0
        return rate


def _shown_key(name: str) -> str:
    """A key as it can be shown in a message: quoted if it is empty, odd or long."""
    if re.fullmatch(r"[\w.<>-]{1,40}", name):
        return name
    return json.dumps(name[:40] + ("..." if len(name) > 40 else ""), ensure_ascii=False)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG


def _overlap(path: Path, other: Path) -> str | None:
    if path == other:
        return "is the same as"
    if path.is_relative_to(other):
        return "is inside"
    if other.is_relative_to(path):
        return "contains"
    return None


def _bad_pattern(pattern: str) -> bool:
    import pathspec  # here, not at start: only a folder with ignore patterns needs it

    try:
        pathspec.GitIgnoreSpec.from_lines([pattern])
    except (ValueError, re.error):
        return True
    return False


def _default_device_name() -> str:
    name = _DEVICE_NAME_BAD.sub("-", socket.gethostname()).strip(" .")[:64].strip(" .")
    return name or "device"


# ---------------------------------------------------------------------------------------------
# Hub URLs that strip TLS or leak a password

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
WEAK_SSLMODES = (None, "disable", "allow", "prefer")  # libpq's default `prefer` falls back to plaintext
TLS_FIX = ("add sslmode=verify-full to hub.url (or sslmode=verify-ca&sslrootcert=PATH of the hub's CA, "
           "as `shoal join` writes): without it the connection can be downgraded to plaintext or "
           "intercepted, password and files included")


@dataclass(frozen=True)
class HubTarget:
    """What a hub URL says about where it connects and how (see hub_url_target)."""
    hosts: tuple[str, ...]
    remote: bool  # some host is reached over a network (not loopback, not a Unix socket)
    sslmode: str | None
    has_password: bool


def _keyword_pairs(conninfo: str) -> dict[str, str]:
    """The `key=value` pairs of a libpq keyword/value connection string (values may be
    single-quoted with backslash escapes). Raises nothing."""
    pairs: dict[str, str] = {}
    for m in re.finditer(r"(\w+)\s*=\s*(?:'((?:[^'\\]|\\.)*)'|(\S*))", conninfo):
        value = m.group(2) if m.group(2) is not None else m.group(3)
        pairs[m.group(1)] = re.sub(r"\\(.)", r"\1", value)
    return pairs


def _is_local_host(host: str) -> bool:
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host == "" or host.startswith(("/", "@")) or host.lower() in LOCAL_HOSTS


def hub_url_target(url: str) -> HubTarget:
    """Parse a hub URL (`postgresql://` URL or keyword/value conninfo) for its hosts, sslmode
    and whether it carries a password. `embedded` is local. Raises nothing (what cannot be
    parsed counts as no host: libpq refuses it anyway)."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    if url == "embedded":
        return HubTarget((), False, None, False)
    params: dict[str, str]
    hosts: list[str] = []
    has_password = False
    if url.startswith(("postgresql://", "postgres://")):
        rest = url.split("://", 1)[1]
        netloc = rest.split("/", 1)[0].split("?", 1)[0]
        userinfo, at, hostlist = netloc.rpartition("@")
        has_password = bool(at) and ":" in userinfo
        for item in hostlist.split(","):
            if item.startswith("["):
                hosts.append(unquote(item[1:item.find("]")] if "]" in item else item))
            else:
                hosts.append(unquote(item.rsplit(":", 1)[0] if item.count(":") == 1 else item))
        try:
            params = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
        except ValueError:
            params = {}
    else:
        params = _keyword_pairs(url)
    if "host" in params:
        hosts = params["host"].split(",")
    if "hostaddr" in params:  # the address actually connected to
        hosts = params["hostaddr"].split(",")
    hosts = hosts or [""]
    has_password = has_password or bool(params.get("password"))
    sslmode = params.get("sslmode") or None
    return HubTarget(tuple(hosts), not all(_is_local_host(h) for h in hosts), sslmode, has_password)


@dataclass(frozen=True)
class ConfigNotice:
    level: str  # "refuse" (config check exits 2) or "warn"
    message: str  # `<file>:<line>: hub.url: <what>; <fix>`, never the password


def file_mode(path: Path) -> int | None:
    """Permission bits of `path`, None if it cannot be stat-ed or not on POSIX. Raises nothing."""
    if os.name != "posix":
        return None
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None


def hub_security_notices(config: Config) -> list[ConfigNotice]:
    """What `shoal config check` and `shoal doctor` say about the hub URL's safety:

    - a password in hub.url of a config file that group or others may read: refuse (the
      password is exposed already: move it out and chmod the file);
    - a password in hub.url of a private file: warn (SPEC: never the password itself);
    - a remote host (TCP, not loopback) without sslmode verify-full/verify-ca, or with `require`
      (encrypted but the server is not checked): warn.

    Raises nothing.
    """
    hub = config.hub
    target = hub_url_target(hub.url)
    where = f"{Path(config.path).name}:{hub.url_line or 1}: hub.url"
    notices = []
    if target.has_password:
        move = ("move the password to a file (hub.password_file, mode 0600) or an environment "
                "variable (hub.password_env) and take it out of the URL")
        mode = file_mode(config.path)
        if mode is not None and mode & 0o077:
            notices.append(ConfigNotice("refuse", (
                f"{where}: holds a password and the file is readable by others (mode {mode:04o}); "
                f"{move}, then chmod 600 {config.path} (and change the password: it was exposed)")))
        else:
            notices.append(ConfigNotice("warn", f"{where}: holds a password; {move}"))
    if target.remote and target.sslmode in WEAK_SSLMODES:
        shown = f"sslmode={target.sslmode}" if target.sslmode else "no sslmode (libpq's default is prefer)"
        notices.append(ConfigNotice("warn", f"{where}: a remote hub with {shown}; {TLS_FIX}"))
    elif target.remote and target.sslmode == "require":
        notices.append(ConfigNotice("warn", f"{where}: sslmode=require encrypts but does not check the "
                                            f"hub's certificate; {TLS_FIX}"))
    return notices


# ---------------------------------------------------------------------------------------------
# The hub password


def read_hub_password(hub: HubConfig, env: Mapping[str, str] = os.environ) -> str | None:
    """The hub password from the environment variable or the file the config names; None if
    it names neither.

    Raises ConfigError if the variable is unset or empty, or the file is missing, unreadable,
    not a regular file, empty, or readable or writable by group or others ("must be mode
    0600"). The password itself never appears in any message.
    """
    if hub.password_env:
        value = env.get(hub.password_env)
        if not value:
            raise ConfigError(f"hub.password_env: environment variable {hub.password_env} is not set or empty")
        return value
    if hub.password_file is None:
        return None
    return read_secret_file(hub.password_file, "hub.password_file", "password_file")


def read_passphrase(folder: FolderConfig) -> str:
    """The passphrase of an encrypted folder, from its passphrase file (checked as a password
    file is). Raises ConfigError; the passphrase never appears in a message."""
    if folder.passphrase_file is None:
        raise ConfigError(f"folder {folder.id} is not encrypted (no encryption.passphrase_file)")
    return read_secret_file(folder.passphrase_file, f"folder {folder.id}: encryption.passphrase_file",
                            "passphrase_file")


def read_secret_file(path: Path, key: str, short: str) -> str:
    """The text of a secret file without its final line break. Raises ConfigError if it is missing,
    unreadable, not a regular file, empty, not UTF-8, or readable or writable by group or others."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}", path=str(path)) from None
    try:
        # fstat of the open file, so the file checked is the file read.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{key}: {path} is not a regular file", path=str(path))
        if os.name == "posix" and info.st_mode & 0o077:
            raise ConfigError(
                f"{short} {path} must be mode 0600 (it is {stat.S_IMODE(info.st_mode):04o}); "
                f"run: chmod 600 {path}",
                path=str(path),
            )
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}", path=str(path)) from None
    finally:
        os.close(fd)
    try:
        password = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{key}: {path} is not UTF-8 text", path=str(path)) from None
    password = password.rstrip("\r\n")
    if not password:
        raise ConfigError(f"{key}: {path} is empty", path=str(path))
    return password


# ---------------------------------------------------------------------------------------------
# Writing a new config file


_HOSTNAME_RE = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                          r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")


def parse_listen(text: str) -> tuple[str, int] | None:
    """`HOST:PORT` (hub.serve.listen, `init --serve`) -> (host, port); HOST is an IPv4
    address, a bracketed IPv6 address or a host name; None when it is not valid.
    Raises nothing."""
    import ipaddress

    host, sep, port = (text or "").strip().rpartition(":")
    if not sep or not host or not re.fullmatch(r"\d{1,5}", port) or not 1 <= int(port) <= 65535:
        return None
    if host.startswith("[") and host.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(host[1:-1])), int(port)
        except ValueError:
            return None
    try:
        return str(ipaddress.IPv4Address(host)), int(port)
    except ValueError:
        pass
    if ":" in host or re.fullmatch(r"[\d.]+", host) or not _HOSTNAME_RE.fullmatch(host):
        return None
    return host, int(port)


def default_config_text(
    device_name: str,
    hub_url: str = "embedded",
    folders: Sequence[tuple[str, str]] = (("default", "~/Shoal"),),
    serve: str | None = None,
    password_file: str | None = None,
    passphrase_files: Mapping[str, str] | None = None,
) -> str:
    """A commented YAML text for a new config file. Validates nothing (run it through
    parse_config_text for that); raises nothing."""
    lines = [
        "# shoal configuration. Every key is documented in config.example.yaml;",
        "# the commented-out lines show the defaults. Durations: 500ms, 10s, 5m, 1h.",
        "",
        "device:",
        f"  name: {yaml_string(device_name)}    # how this device is named to the others",
        "",
        "# state_dir: ~/.local/share/shoal   # store, logs, control socket, embedded hub",
        "#                                   # (default: the platform's user data dir)",
        "",
        "hub:",
        f"  url: {yaml_string(hub_url)}    # embedded, or postgresql://user@host/db?sslmode=verify-full",
        "  # password_env: SHOAL_HUB_PASSWORD   # name of an environment variable with the password",
        (f"  password_file: {yaml_string(password_file)}   # the hub login's password (mode 0600)"
         if password_file else "  # password_file: ~/.config/shoal/hub-password   # or a file with it (mode 0600)"),
    ]
    if serve:
        lines += ["  serve:", f"    listen: {yaml_string(serve)}    # TLS only; devices join with `shoal join`"]
    else:
        lines += ["  # serve:                 # serve the embedded hub to other devices (TLS only)",
                  "  #   listen: 0.0.0.0:7400"]
    lines += [
        "",
    ]
    if folders:
        lines.append("folders:")
        for folder_id, folder_path in folders:
            lines += [
                f"  - id: {yaml_string(folder_id)}    # the same id on every device means the same folder",
                f"    path: {yaml_string(folder_path)}",
                "    mode: send-receive    # send-only | receive-only | send-receive",
                '    ignore: []            # gitignore patterns, e.g. ["*.tmp", ".thumbnails/"]',
            ]
            if folder_id in (passphrase_files or {}):
                lines += ["    encryption:           # end-to-end: the hub cannot read this folder",
                          f"      passphrase_file: {yaml_string(passphrase_files[folder_id])}   # mode 0600"]
    else:
        lines.append("folders: []")
    lines += [
        "",
        "sync:",
        "  # interval: 5m          # full rescan + sync at least this often",
        "  # debounce: 1s          # quiet time after a file event before it is synced",
        "  # conflict: keep-both   # keep-both | newest-wins",
        "  # trash_days: 30        # how long replaced or deleted files are kept in the trash",
        "  # max_upload_rate: 0    # 0 = unlimited; e.g. 500KB/s, 2MB/s (KB = 1000 bytes, KiB = 1024)",
        "  # max_download_rate: 0",
        "",
        "log:",
        "  # level: info           # debug | info | warning | error",
        "",
    ]
    return "\n".join(lines)


def yaml_string(value: str) -> str:
    """`value` as a YAML scalar that reads back as the same string (quoted only if needed)."""
    dumped = yaml.safe_dump(value, width=1_000_000_000, allow_unicode=True)
    return dumped.removesuffix("\n...\n").rstrip("\n")


def write_new_config(path: Path, text: str) -> None:
    """Write `text` to a new config file at `path`, mode 0600, atomically (temp + rename),
    creating the parent directories.

    Raises UsageError if the file already exists (it is never overwritten), ShoalError if it
    cannot be written.
    """
    path = Path(path)
    exists = UsageError(f"config file already exists: {path}", path=str(path))
    if path.exists() or path.is_symlink():
        raise exists
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_file_atomic(path, text, mode=0o600, replace=False)
    except FileExistsError:
        raise exists from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ShoalError(f"cannot write config file {path}: {reason}", path=str(path)) from None
