"""shoal.config: default paths, loading and validating the YAML file, the hub password,
writing a new config file."""

from __future__ import annotations

import os
import re
import stat
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shoal.config as config_module
from shoal.config import (
    CONFLICT_POLICIES,
    LOG_LEVELS,
    MODES,
    Config,
    FolderConfig,
    HubConfig,
    default_config_path,
    default_config_text,
    default_state_dir,
    is_termux,
    load_config,
    parse_config_text,
    read_hub_password,
    resolve_config_path,
    write_new_config,
)
from shoal.errors import ConfigError, UsageError

REPO_ROOT = Path(__file__).resolve().parent.parent
BASE = Path("/srv/base")  # parse_config_text never touches it: relative paths resolve against it
SECRET = "hunter2-Secr3t!"


def parse(text: str) -> Config:
    return parse_config_text(textwrap.dedent(text), "config.yaml", BASE)


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    return caught.value.problems


@pytest.fixture(autouse=True)
def _fixed_home(tmp_path_factory, monkeypatch):
    """A known $HOME so `~` and the platform default paths are predictable."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "SHOAL_CONFIG", "TERMUX_VERSION"):
        monkeypatch.delenv(name, raising=False)
    return home


# --- defaults --------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n   # and another\n", "---\n", "~\n"])
def test_empty_file_means_all_defaults(text, monkeypatch):
    monkeypatch.setattr(config_module.socket, "gethostname", lambda: "myhost")
    config = parse(text)
    assert config == Config(path=Path("config.yaml"), device=config.device, state_dir=default_state_dir())
    assert config.device.name == "myhost"
    assert config.hub == HubConfig(url="embedded", password_env=None, password_file=None)
    assert config.folders == ()
    assert (config.sync.interval, config.sync.debounce, config.sync.conflict, config.sync.trash_days) == (
        300.0,
        1.0,
        "keep-both",
        30,
    )
    assert config.log.level == "info"


@pytest.mark.parametrize(("hostname", "name"), [("box.local", "box.local"), ("a/b:c", "a-b-c"), ("...", "device")])
def test_default_device_name_is_a_safe_host_name(hostname, name, monkeypatch):
    monkeypatch.setattr(config_module.socket, "gethostname", lambda: hostname)
    assert parse("").device.name == name


def test_null_sections_and_keys_mean_defaults():
    config = parse(
        """
        device:
        hub:
          url:
        folders:
        sync:
          interval:
        log:
        """
    )
    assert config.hub.url == "embedded"
    assert config.folders == ()
    assert config.sync.interval == 300.0


def test_folder_defaults_are_filled_in():
    config = parse(
        """
        folders:
          - id: docs
            path: /data/docs
        """
    )
    assert config.folders == (FolderConfig(id="docs", path=Path("/data/docs"), mode="send-receive", ignore=()),)
    assert config.folder("docs") is config.folders[0]
    assert config.folder("nope") is None


def test_every_key_is_read():
    config = parse(
        """
        device:
          name: pixel-7
        state_dir: /var/lib/shoal-test
        hub:
          url: postgresql://shoal_pixel7@hub.example.org/shoal?sslmode=verify-full
          password_env: SHOAL_HUB_PASSWORD
        folders:
          - id: photos
            path: /media/Camera
            mode: receive-only
            ignore: ["*.tmp", ".thumbnails/"]
          - id: notes.v2_x-y
            path: /media/notes
            mode: send-only
            watch: false
        sync:
          interval: 10m
          debounce: 500ms
          conflict: newest-wins
          trash_days: 0
        log:
          level: debug
        """
    )
    assert config.device.name == "pixel-7"
    assert config.state_dir == Path("/var/lib/shoal-test")
    assert config.hub.url.startswith("postgresql://shoal_pixel7@")
    assert config.hub.password_env == "SHOAL_HUB_PASSWORD"
    assert config.folders[0] == FolderConfig("photos", Path("/media/Camera"), "receive-only", ("*.tmp", ".thumbnails/"))
    assert (config.folders[1].id, config.folders[1].mode) == ("notes.v2_x-y", "send-only")
    assert config.folders[0].watch and not config.folders[1].watch
    assert (config.sync.interval, config.sync.debounce) == (600.0, 0.5)
    assert (config.sync.conflict, config.sync.trash_days, config.log.level) == ("newest-wins", 0, "debug")


@pytest.mark.parametrize(
    ("text", "attribute", "expected"),
    [
        # Values are read as written, not as PyYAML would type them.
        ("device: {name: no}", "device.name", "no"),
        ("device: {name: 2024}", "device.name", "2024"),
        ("folders: [{id: 2024, path: /x}]", "folders[0].id", "2024"),
        ("folders: [{id: a, path: /x, ignore: [123, yes]}]", "folders[0].ignore", ("123", "yes")),
        ("sync: {interval: 30}", "sync.interval", 30.0),
        ("folders: [{id: a, path: /x, watch: False}]", "folders[0].watch", False),
        ("sync: {interval: '45'}", "sync.interval", 45.0),
        ("sync: {debounce: 0}", "sync.debounce", 0.0),
        ("sync: {trash_days: '7'}", "sync.trash_days", 7),
        ("hub: {url: 'host=hub dbname=shoal'}", "hub.url", "host=hub dbname=shoal"),
        ("hub: {url: 'postgres://h/db'}", "hub.url", "postgres://h/db"),
    ],
)
def test_scalars_are_read_as_written(text, attribute, expected):
    value = parse(text)
    for part in re.findall(r"\w+|\[\d+\]", attribute):
        value = value[int(part[1:-1])] if part.startswith("[") else getattr(value, part)
    assert value == expected


# --- paths in the file -----------------------------------------------------------------------


def test_tilde_is_expanded(_fixed_home):
    config = parse(
        """
        state_dir: ~/state
        hub: {password_file: ~/pw}
        folders:
          - {id: photos, path: ~/Photos}
          - {id: home, path: ~/Documents/../Music}
        """
    )
    assert config.state_dir == _fixed_home / "state"
    assert config.hub.password_file == _fixed_home / "pw"
    assert config.folders[0].path == _fixed_home / "Photos"
    assert config.folders[1].path == _fixed_home / "Music"


def test_relative_paths_resolve_against_the_config_directory(tmp_path):
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    (conf_dir / "config.yaml").write_text("state_dir: st\nfolders:\n  - {id: a, path: photos}\n  - {id: b, path: ../b}\n")
    config = load_config(conf_dir / "config.yaml")
    assert config.state_dir == conf_dir / "st"
    assert config.folders[0].path == conf_dir / "photos"
    assert config.folders[1].path == tmp_path / "b"
    assert config.path == conf_dir / "config.yaml"


def test_parse_config_text_uses_base_dir_and_filename():
    config = parse_config_text("folders: [{id: a, path: x}]", "/etc/shoal/other.yaml", Path("/opt/conf"))
    assert config.folders[0].path == Path("/opt/conf/x")
    assert config.path == Path("/etc/shoal/other.yaml")
    with pytest.raises(ConfigError, match=r"^other\.yaml:1: hub: "):
        parse_config_text("hub: 3", "/etc/shoal/other.yaml", Path("/opt/conf"))


# --- invalid files: exact messages -----------------------------------------------------------


INVALID = [
    # unknown keys, at the top level and nested
    ("devise:\n  name: x\n", ["config.yaml:1: devise: unknown key (allowed: device, state_dir, hub, folders, sync, log)"]),
    (
        "device:\n  name: x\nhub:\n  ulr: embedded\n",
        ["config.yaml:4: hub.ulr: unknown key (allowed: url, password_env, password_file, serve, keep_versions)"],
    ),
    (
        "folders:\n  - id: a\n    path: /a\n  - id: b\n    path: /b\n    pth: /c\n",
        ["config.yaml:6: folders[1].pth: unknown key (allowed: id, path, mode, ignore, encryption, watch)"],
    ),
    ("folders:\n  - id: a\n    path: /a\n    watch: sometimes\n",
     ["config.yaml:4: folders[0].watch: must be true or false"]),
    ("folders:\n  - id: a\n    path: /a\n    encryption: {}\n",
     ["config.yaml:4: folders[0].encryption.passphrase_file: is required"]),
    ("folders:\n  - id: a\n    path: /a\n    encryption:\n      passphrase: hunter2\n",
     ["config.yaml:4: folders[0].encryption.passphrase_file: is required",
      "config.yaml:5: folders[0].encryption.passphrase: unknown key (allowed: passphrase_file)"]),
    ("folders:\n  - id: a\n    path: /a\n    encryption: secret\n",
     ["config.yaml:4: folders[0].encryption: must be a mapping (keys: passphrase_file)",
      "config.yaml:4: folders[0].encryption.passphrase_file: is required"]),
    ("sync:\n  every: 5m\n", ["config.yaml:2: sync.every: unknown key (allowed: interval, debounce, conflict, trash_days, "
                             "max_upload_rate, max_download_rate, when)"]),
    ("log: {level: info, file: x}\n", ["config.yaml:1: log.file: unknown key (allowed: level)"]),
    ("device: {name: a, name: b}\n", ["config.yaml:1: device.name: duplicate key (first on line 1)"]),
    ("base: &b {level: info}\nlog:\n  <<: *b\n", [
        "config.yaml:1: base: unknown key (allowed: device, state_dir, hub, folders, sync, log)",
        "config.yaml:3: log: YAML merge keys (<<) are not supported",
    ]),
    ("? [a]\n: 1\n", ["config.yaml:1: top level: keys must be plain names, not lists or mappings"]),
    # wrong shapes and types
    ("- a\n- b\n", ["config.yaml:1: top level: must be a mapping (keys: device, state_dir, hub, folders, sync, log)"]),
    ("just text\n", ["config.yaml:1: top level: must be a mapping (keys: device, state_dir, hub, folders, sync, log)"]),
    ("device: pixel\n", ["config.yaml:1: device: must be a mapping (keys: name)"]),
    ("hub: postgresql://h/db\n", ["config.yaml:1: hub: must be a mapping (keys: url, password_env, password_file, serve, keep_versions)"]),
    ("folders:\n  id: a\n  path: /a\n", ["config.yaml:1: folders: must be a list of folders (mappings with id and path)"]),
    ("folders: photos\n", ["config.yaml:1: folders: must be a list of folders (mappings with id and path)"]),
    ("folders:\n  - /a\n", ["config.yaml:2: folders[0]: must be a mapping (keys: id, path, mode, ignore, encryption, watch)"]),
    (
        "folders:\n  - id: a\n    path: /a\n    ignore: '*.tmp'\n",
        ["config.yaml:4: folders[0].ignore: must be a list of strings (gitignore patterns)"],
    ),
    (
        "folders:\n  - id: a\n    path: /a\n    ignore:\n      - '*.tmp'\n      - [x]\n      - {a: 1}\n      -\n",
        [
            "config.yaml:6: folders[0].ignore[1]: must be a string (a gitignore pattern)",
            "config.yaml:7: folders[0].ignore[2]: must be a string (a gitignore pattern)",
            "config.yaml:8: folders[0].ignore[3]: must be a string (a gitignore pattern)",
        ],
    ),
    ("folders: [{id: a, path: /a, ignore: ['\\']}]\n", ["config.yaml:1: folders[0].ignore[0]: is not a valid gitignore pattern"]),
    ("device:\n  name: [a, b]\n", ["config.yaml:2: device.name: must be a string"]),
    ("state_dir: {a: 1}\n", ["config.yaml:1: state_dir: must be a path"]),
    ("state_dir: ''\n", ["config.yaml:1: state_dir: must be a path (not empty, no NUL character)"]),
    ("state_dir: \"a\\0b\"\n", ["config.yaml:1: state_dir: must be a path (not empty, no NUL character)"]),
    ("state_dir: ~no_such_user_xyz/s\n", ["config.yaml:1: state_dir: cannot expand ~no_such_user_xyz: no such user"]),
    ("sync:\n  trash_days: x\n", ["config.yaml:2: sync.trash_days: must be a whole number of days >= 0"]),
    ("sync:\n  trash_days: -1\n", ["config.yaml:2: sync.trash_days: must be a whole number of days >= 0"]),
    ("sync:\n  trash_days: 1.5\n", ["config.yaml:2: sync.trash_days: must be a whole number of days >= 0"]),
    ("sync:\n  trash_days: 0x1E\n", ["config.yaml:2: sync.trash_days: must be a whole number of days >= 0"]),
    ("sync:\n  trash_days: [30]\n", ["config.yaml:2: sync.trash_days: must be a whole number of days >= 0"]),
    (
        "sync:\n  trash_days: 99999999\n",
        ["config.yaml:2: sync.trash_days: must be a whole number of days >= 0 and at most 1000000"],
    ),
    # enums
    (
        "folders:\n  - id: a\n    path: /a\n  - id: b\n    path: /b\n    mode: sendonly\n",
        ["config.yaml:6: folders[1].mode: must be one of send-only, receive-only, send-receive"],
    ),
    ("folders: [{id: a, path: /a, mode: [x]}]\n", ["config.yaml:1: folders[0].mode: must be one of send-only, receive-only, send-receive"]),
    ("sync:\n  conflict: ours\n", ["config.yaml:2: sync.conflict: must be one of keep-both, newest-wins"]),
    ("log:\n  level: INFO\n", ["config.yaml:2: log.level: must be one of debug, info, warning, error"]),
    ("log:\n  level: verbose\n", ["config.yaml:2: log.level: must be one of debug, info, warning, error"]),
    # durations
    ("sync:\n  interval: 5 minutes\n", ["config.yaml:2: sync.interval: must be a duration such as 500ms, 10s, 5m or 1h"]),
    ("sync:\n  debounce: -1s\n", ["config.yaml:2: sync.debounce: must be a duration such as 500ms, 10s, 5m or 1h"]),
    ("sync:\n  interval: 1:30\n", ["config.yaml:2: sync.interval: must be a duration such as 500ms, 10s, 5m or 1h"]),
    ("sync:\n  interval: .nan\n", ["config.yaml:2: sync.interval: must be a duration such as 500ms, 10s, 5m or 1h"]),
    ("sync:\n  interval: [5m]\n", ["config.yaml:2: sync.interval: must be a duration such as 500ms, 10s, 5m or 1h"]),
    ("sync:\n  interval: 0s\n", ["config.yaml:2: sync.interval: must be longer than 0 (a duration such as 10s, 5m or 1h)"]),
    # folders: required keys, ids, overlapping paths
    ("folders:\n  - mode: send-only\n", ["config.yaml:2: folders[0].id: is required", "config.yaml:2: folders[0].path: is required"]),
    ("folders:\n  - id:\n    path: /a\n", ["config.yaml:2: folders[0].id: is required"]),
    (
        "folders:\n  - id: my photos\n    path: /a\n",
        ['config.yaml:2: folders[0].id: must be letters, digits, "-", "_" and "." only (and not . or ..)'],
    ),
    ("folders: [{id: '', path: /a}]\n", ['config.yaml:1: folders[0].id: must be letters, digits, "-", "_" and "." only (and not . or ..)']),
    ("folders: [{id: .., path: /a}]\n", ['config.yaml:1: folders[0].id: must be letters, digits, "-", "_" and "." only (and not . or ..)']),
    (
        "folders:\n  - id: photos\n    path: /a\n  - id: photos\n    path: /b\n",
        ['config.yaml:4: folders[1].id: duplicate folder id "photos" (also on line 2)'],
    ),
    (
        "folders:\n  - id: a\n    path: /data/photos\n  - id: b\n    path: /data/photos/2024\n",
        ['config.yaml:5: folders[1].path: is inside the path of folder "a" (/data/photos)'],
    ),
    (
        "folders:\n  - id: a\n    path: /data/photos/2024\n  - id: b\n    path: /data\n",
        ['config.yaml:5: folders[1].path: contains the path of folder "a" (/data/photos/2024)'],
    ),
    (
        "folders:\n  - id: a\n    path: /data/x\n  - id: b\n    path: /data/y/../x/\n",
        ['config.yaml:5: folders[1].path: is the same as the path of folder "a" (/data/x)'],
    ),
    (
        "state_dir: /data/x/.state\nfolders:\n  - id: a\n    path: /data/x\n",
        ["config.yaml:4: folders[0].path: contains the state dir (/data/x/.state); the store must not be synced"],
    ),
    # hub
    ("hub:\n  url: mysql://h/db\n", ['config.yaml:2: hub.url: must be "embedded", a postgresql:// URL or a key=value connection string']),
    ("hub:\n  url: [a]\n", ["config.yaml:2: hub.url: must be a string"]),
    ("hub:\n  url: ''\n", ['config.yaml:2: hub.url: must be "embedded", a postgresql:// URL or a key=value connection string']),
    (
        "hub:\n  password_env: X\n  password_file: /pw\n",
        ["config.yaml:1: hub: set password_env or password_file, not both"],
    ),
    (
        "hub:\n  password_env: my password\n",
        ["config.yaml:2: hub.password_env: must be the name of an environment variable (such as SHOAL_HUB_PASSWORD), not the password itself"],
    ),
    (
        "device:\n  name: a/b\n",
        ['config.yaml:2: device.name: must be 1 to 64 characters, without / \\ : * ? " < > | or control characters, '
         "not starting or ending with a space or a dot"],
    ),
]


@pytest.mark.parametrize(("text", "expected"), INVALID)
def test_invalid_file_exact_messages(text, expected):
    assert problems_of(text) == expected


def test_the_spec_example_message():
    text = "# comment\n" * 8 + "folders:\n  - id: a\n    path: /a\n  - id: b\n    path: /b\n    mode: both\n"
    problems = problems_of(text)
    assert problems == ["config.yaml:14: folders[1].mode: must be one of send-only, receive-only, send-receive"]


def test_several_problems_are_reported_at_once_in_line_order():
    text = """\
        device:
          nam: x
        hub:
          url: mysql://x
        folders:
          - id: a
            path: /a
            mode: sync
          - id: a
            path: /a/b
        sync:
          interval: soon
          trash_days: many
        log:
          level: loud
        """
    with pytest.raises(ConfigError) as caught:
        parse(text)
    error = caught.value
    assert error.problems == [
        "config.yaml:2: device.nam: unknown key (allowed: name)",
        'config.yaml:4: hub.url: must be "embedded", a postgresql:// URL or a key=value connection string',
        "config.yaml:8: folders[0].mode: must be one of send-only, receive-only, send-receive",
        "config.yaml:12: sync.interval: must be a duration such as 500ms, 10s, 5m or 1h",
        "config.yaml:13: sync.trash_days: must be a whole number of days >= 0",
        "config.yaml:15: log.level: must be one of debug, info, warning, error",
    ]
    assert error.message == "\n".join(error.problems) == str(error)
    assert error.exit_code == 2
    assert error.path == "config.yaml"


def test_folder_checks_across_folders_report_together():
    problems = problems_of(
        """\
        folders:
          - {id: a, path: /d}
          - {id: a, path: /d/e}
          - {id: c, path: /d/e/f}
        """
    )
    assert problems == [
        'config.yaml:3: folders[1].id: duplicate folder id "a" (also on line 2)',
        'config.yaml:3: folders[1].path: is inside the path of folder "a" (/d)',
        'config.yaml:4: folders[2].path: is inside the path of folder "a" (/d)',
        'config.yaml:4: folders[2].path: is inside the path of folder "a" (/d/e)',
    ]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("device:\n  name: [a\n", 3),
        ("device:\n  name: x\n   bad: indent\n", 3),
        ("a: 1\nb:\n\t- tab\n", 3),
        ("folders:\n  - id: a\n  path: x\n", 3),
        ("a: *nowhere\n", 1),
        ("a: 1\n---\nb: 2\n", 2),
        ("a: 'open\n", 2),
        ("ok: 1\nbad: \x07\n", 2),
    ],
)
def test_yaml_syntax_error_names_file_and_line(text, line):
    problems = problems_of(text)
    assert len(problems) == 1
    assert problems[0].startswith(f"config.yaml:{line}: invalid YAML: ")


def test_deeply_nested_yaml_is_refused_not_crashing():
    with pytest.raises(ConfigError, match=r"^config\.yaml:\d+: "):
        parse("a: " + "[" * 5000 + "]" * 5000)


# --- load_config: the file itself -----------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope" / "config.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"config file not found: {path} (run `shoal init`)"
    assert caught.value.exit_code == 2


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match=r"^cannot read config file .*: Is a directory$"):
        load_config(tmp_path)


def test_syntax_error_in_a_file_uses_its_basename(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("device:\n  name: x\nsync: [\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems[0].startswith("mine.yaml:4: invalid YAML: ")
    assert str(tmp_path) not in caught.value.problems[0]
    assert caught.value.path == str(path)


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"device:\n  name: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"^config\.yaml:2: not valid UTF-8 text$"):
        load_config(path)


def test_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes("\ufeffdevice:\n  name: bom\n".encode())
    assert load_config(path).device.name == "bom"


def test_config_example_loads_and_documents_every_key():
    path = REPO_ROOT / "config.example.yaml"
    config = load_config(path)
    assert config.folders[0].id == "photos"
    assert config.hub.password_env == "SHOAL_HUB_PASSWORD"
    text = path.read_text()
    for key in (
        "device", "name", "state_dir", "hub", "url", "password_env", "password_file", "folders",
        "id", "path", "mode", "ignore", "sync", "interval", "debounce", "conflict", "trash_days",
        "max_upload_rate", "max_download_rate",
        "log", "level", "serve", "listen", "encryption", "passphrase_file", "keep_versions",
        "when", "wifi_only", "charging_only", "min_battery", "hours", "watch",
    ):  # fmt: skip
        lines = [line for line in text.splitlines() if re.match(rf"\s*#?\s*(- )?{key}:", line)]
        assert lines, f"config.example.yaml does not document {key}"
        assert all("#" in line.split(f"{key}:", 1)[1] or line.rstrip().endswith(":") for line in lines)
    for value in (*MODES, *CONFLICT_POLICIES, *LOG_LEVELS):
        assert value in text


# --- default paths ---------------------------------------------------------------------------


def test_config_path_precedence(tmp_path, _fixed_home):
    env = {"SHOAL_CONFIG": str(tmp_path / "env.yaml")}
    assert resolve_config_path(str(tmp_path / "cli.yaml"), env) == tmp_path / "cli.yaml"
    assert resolve_config_path(None, env) == tmp_path / "env.yaml"
    assert resolve_config_path(None, {}) == default_config_path({})
    assert resolve_config_path("~/c.yaml", env) == _fixed_home / "c.yaml"
    assert default_config_path({"SHOAL_CONFIG": "~/x.yaml"}) == _fixed_home / "x.yaml"
    assert default_config_path({"SHOAL_CONFIG": ""}) == default_config_path({})


def test_default_paths_are_the_platform_dirs(_fixed_home):
    import platformdirs

    assert default_config_path({}) == Path(platformdirs.user_config_dir("shoal")) / "config.yaml"
    assert default_state_dir() == Path(platformdirs.user_data_dir("shoal"))


@pytest.mark.parametrize(
    ("env", "prefix", "expected"),
    [
        ({"TERMUX_VERSION": "0.118.0"}, "/usr", True),
        ({"HOME": "/data/data/com.termux/files/home"}, "/usr", True),
        ({}, "/data/data/com.termux/files/usr", True),
        ({"HOME": "/data/data/com.termuxish/home"}, "/usr", False),
        ({"TERMUX_VERSION": ""}, "/usr", False),
        ({"HOME": "/home/me"}, "/usr", False),
        ({}, "/usr", False),
    ],
)
def test_termux_detection(env, prefix, expected, monkeypatch):
    monkeypatch.setattr(sys, "prefix", prefix)
    assert is_termux(env) is expected


def test_termux_uses_the_home_layout_even_without_shell(monkeypatch, _fixed_home):
    # Android markers without SHELL/PREFIX would make platformdirs pick app-private dirs.
    monkeypatch.setenv("ANDROID_DATA", "/data")
    monkeypatch.setenv("ANDROID_ROOT", "/system")
    monkeypatch.delenv("SHELL", raising=False)
    monkeypatch.delenv("PREFIX", raising=False)
    env = {"TERMUX_VERSION": "0.118.0"}
    assert default_config_path(env) == _fixed_home / ".config" / "shoal" / "config.yaml"
    assert default_state_dir(env) == _fixed_home / ".local" / "share" / "shoal"


# --- the hub password ------------------------------------------------------------------------


def _password_file(tmp_path: Path, mode: int, content: str = SECRET + "\n") -> Path:
    path = tmp_path / "hub-password"
    path.write_text(content)
    path.chmod(mode)
    return path


def test_password_from_env():
    hub = HubConfig(url="postgresql://h/db", password_env="HUB_PW")
    assert read_hub_password(hub, {"HUB_PW": SECRET}) == SECRET
    assert read_hub_password(HubConfig(), {"HUB_PW": SECRET}) is None


@pytest.mark.parametrize("env", [{}, {"HUB_PW": ""}])
def test_password_env_unset(env):
    with pytest.raises(ConfigError, match="environment variable HUB_PW is not set or empty"):
        read_hub_password(HubConfig(password_env="HUB_PW"), env)


def test_password_file_0600_is_read(tmp_path):
    path = _password_file(tmp_path, 0o600)
    assert read_hub_password(HubConfig(password_file=path), {}) == SECRET


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o620])
def test_password_file_open_to_others_is_refused(tmp_path, mode):
    path = _password_file(tmp_path, mode)
    with pytest.raises(ConfigError) as caught:
        read_hub_password(HubConfig(password_file=path), {})
    assert str(caught.value).startswith(f"password_file {path} must be mode 0600 (it is {mode:04o})")
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "cannot read"),
        (lambda p: (p.write_text("\n"), p.chmod(0o600)), "is empty"),
        (lambda p: (p.write_bytes(b"\xff" + SECRET.encode()), p.chmod(0o600)), "is not UTF-8 text"),
        (lambda p: p.mkdir(), "is not a regular file"),
        (lambda p: p.symlink_to(_password_file(p.parent, 0o600)), "cannot read"),  # never followed
    ],
)
def test_password_file_problems(tmp_path, setup, message):
    path = tmp_path / "pw"
    setup(path)
    with pytest.raises(ConfigError) as caught:
        read_hub_password(HubConfig(password_file=path), {})
    assert message in str(caught.value)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        f"hub: {{url: 'postgresql://me:{SECRET}@h/db', password_env: X, password_file: /p}}",
        f"hub: {{url: 'mysql://me:{SECRET}@h/db'}}",
        f"hub: {{password_env: '{SECRET}'}}",
    ],
)
def test_config_messages_never_echo_a_password(text):
    problems = problems_of(text)
    assert problems
    assert all(SECRET not in problem for problem in problems)


# --- writing a new config --------------------------------------------------------------------


@pytest.mark.parametrize("device_name", ["pixel-7", "my laptop #2", "yes", "null", "2024", "Ωmega", "a'b"])
@pytest.mark.parametrize("hub_url", ["embedded", "postgresql://u@hub:5432/shoal?sslmode=require", "host=h dbname=shoal"])
def test_default_config_text_round_trips(device_name, hub_url, tmp_path):
    folders = [("default", "~/Shoal"), ("docs", "relative/docs"), ("x.1", "~/with space/[b] #c: d")]
    path = tmp_path / "config.yaml"
    write_new_config(path, default_config_text(device_name, hub_url, folders))
    config = load_config(path)
    assert config.device.name == device_name
    assert config.hub.url == hub_url
    assert [(f.id, f.mode, f.ignore) for f in config.folders] == [
        ("default", "send-receive", ()),
        ("docs", "send-receive", ()),
        ("x.1", "send-receive", ()),
    ]
    assert config.folders[1].path == tmp_path / "relative" / "docs"
    assert config.folders[2].path == Path.home() / "with space" / "[b] #c: d"
    assert config.sync == parse("").sync and config.log == parse("").log


def test_default_config_text_defaults():
    config = parse_config_text(default_config_text("box"), "config.yaml", BASE)
    assert [(f.id, f.path) for f in config.folders] == [("default", Path.home() / "Shoal")]
    assert config.hub.url == "embedded"
    assert parse_config_text(default_config_text("box", folders=()), "c.yaml", BASE).folders == ()


def test_write_new_config_creates_a_private_file(tmp_path):
    path = tmp_path / "a" / "b" / "config.yaml"
    write_new_config(path, "device: {name: x}\n")
    assert path.read_text() == "device: {name: x}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(path.parent) == ["config.yaml"]  # no temp file left behind


@pytest.mark.parametrize("existing", ["file", "dangling symlink"])
def test_write_new_config_refuses_to_overwrite(tmp_path, existing):
    path = tmp_path / "config.yaml"
    if existing == "file":
        path.write_text("mine\n")
    else:
        path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UsageError) as caught:
        write_new_config(path, "device: {name: x}\n")
    assert str(caught.value) == f"config file already exists: {path}"
    assert caught.value.exit_code == 2
    if existing == "file":
        assert path.read_text() == "mine\n"
    else:
        assert not (tmp_path / "elsewhere").exists()
    assert sorted(os.listdir(tmp_path)) == ["config.yaml"]


# --- fuzz: anything in, a Config or a ConfigError out ----------------------------------------

_KEYS = [
    "device", "name", "state_dir", "hub", "url", "password_env", "password_file", "folders", "id",
    "path", "mode", "ignore", "sync", "interval", "debounce", "conflict", "trash_days", "log", "level",
]  # fmt: skip
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["5m", "500ms", "~", "~/x", "embedded", "keep-both", "send-only", "info", "/a", "a", ".."]),
)
_STRUCTURES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(_KEYS), st.text(max_size=8)), children, max_size=5),
    ),
    max_leaves=25,
)
_TOP = st.dictionaries(st.sampled_from(_KEYS), _STRUCTURES, max_size=6)
_PROBLEM = re.compile(r"^config\.yaml:\d+: \S")


def _parse_or_config_error(text: str) -> None:
    try:
        config = parse_config_text(text, "config.yaml", BASE)
    except ConfigError as exc:
        assert exc.problems and all(_PROBLEM.match(problem) for problem in exc.problems), exc.problems
    else:
        assert isinstance(config, Config)
        assert all(folder.path.is_absolute() for folder in config.folders)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text())
def test_fuzz_arbitrary_text(text):
    _parse_or_config_error(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(_TOP, _STRUCTURES))
def test_fuzz_yaml_structures(structure):
    _parse_or_config_error(yaml.safe_dump(structure, allow_unicode=True))


# -- Config that strips TLS or leaks a password (issue 9, item 15) ----------------------------

from shoal.config import hub_security_notices, hub_url_target  # noqa: E402


@pytest.mark.parametrize("url, remote, sslmode, password", [
    ("embedded", False, None, False),
    ("postgresql://u@hub.example.org/shoal", True, None, False),
    ("postgresql://u@hub.example.org:5433/shoal?sslmode=verify-full", True, "verify-full", False),
    ("postgres://u:pw@10.0.0.5/shoal?sslmode=prefer", True, "prefer", True),
    ("postgresql://u@localhost/shoal", False, None, False),
    ("postgresql://u@127.0.0.1:5432/shoal", False, None, False),
    ("postgresql://u@[::1]:5432/shoal", False, None, False),
    ("postgresql://u@/shoal?host=/var/run/postgresql", False, None, False),
    ("postgresql://u@%2Fvar%2Frun%2Fpostgresql/shoal", False, None, False),
    ("postgresql:///shoal", False, None, False),
    ("postgresql://u@localhost,hub.example.org/shoal", True, None, False),
    ("postgresql://u@localhost/shoal?host=hub.example.org", True, None, False),
    ("postgresql://u@hub/shoal?password=x&sslmode=disable", True, "disable", True),
    ("host=hub.example.org dbname=shoal user=u", True, None, False),
    ("host=/tmp dbname=shoal", False, None, False),
    ("dbname=shoal", False, None, False),
    ("host=h dbname=shoal password='p w' sslmode = verify-ca", True, "verify-ca", True),
    ("host=127.0.0.1 port=5432 dbname=x", False, None, False),
])
def test_hub_url_target(url, remote, sslmode, password):
    target = hub_url_target(url)
    assert (target.remote, target.sslmode, target.has_password) == (remote, sslmode, password)


def _notices(tmp_path, url: str, mode: int = 0o600):
    path = tmp_path / "config.yaml"
    path.write_text(f"device:\n  name: x\nstate_dir: {tmp_path / 'state'}\nhub:\n  url: {url}\n")
    path.chmod(mode)
    return hub_security_notices(load_config(path))


@pytest.mark.parametrize("url", [
    "postgresql://u@hub.example.org/shoal",
    "postgresql://u@hub.example.org/shoal?sslmode=prefer",
    "postgresql://u@hub.example.org/shoal?sslmode=allow",
    "postgresql://u@hub.example.org/shoal?sslmode=disable",
])
def test_remote_hub_without_verified_tls_is_warned_with_the_fix(tmp_path, url):
    notices = _notices(tmp_path, url)
    assert [n.level for n in notices] == ["warn"]
    assert notices[0].message.startswith("config.yaml:5: hub.url: ")
    assert "sslmode=verify-full" in notices[0].message and "sslrootcert=" in notices[0].message


@pytest.mark.parametrize("url", [
    "postgresql://u@hub.example.org/shoal?sslmode=verify-full",
    "postgresql://u@hub.example.org/shoal?sslmode=verify-ca&sslrootcert=/etc/ca.pem",
    "postgresql://u@127.0.0.1:5432/shoal",
    "postgresql://u@/shoal?host=/run/postgresql",
    "embedded",
])
def test_local_or_verified_hub_is_fine(tmp_path, url):
    assert _notices(tmp_path, url) == []


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_password_in_url_of_a_file_others_can_read_is_refused(tmp_path, mode):
    notices = _notices(tmp_path, f"postgresql://u:{SECRET}@127.0.0.1/shoal", mode)
    assert [n.level for n in notices] == ["refuse"]
    text = notices[0].message
    assert text.startswith("config.yaml:5: hub.url: ") and f"{mode:04o}" in text
    assert "password_file" in text and "password_env" in text and "chmod 600" in text
    assert SECRET not in text


def test_password_in_url_of_a_private_file_is_a_warning(tmp_path):
    notices = _notices(tmp_path, f"postgresql://u:{SECRET}@127.0.0.1/shoal", 0o600)
    assert [n.level for n in notices] == ["warn"] and "password_file" in notices[0].message
    assert SECRET not in notices[0].message


# --- hub.serve.listen ------------------------------------------------------------------------

@pytest.mark.parametrize("listen, expected", [
    ("0.0.0.0:7400", "0.0.0.0:7400"),
    ("127.0.0.1:1", "127.0.0.1:1"),
    ("'[::]:7400'", "[::]:7400"),
    ("laptop.lan:65535", "laptop.lan:65535"),
])
def test_hub_serve_listen_is_read(listen, expected):
    config = parse_config_text(f"hub:\n  url: embedded\n  serve:\n    listen: {listen}\n", "config.yaml", Path("/x"))
    assert config.hub.serve_listen == expected
    assert config.hub.url == "embedded"


def test_hub_is_not_served_by_default():
    assert parse_config_text("hub:\n  url: embedded\n", "config.yaml", Path("/x")).hub.serve_listen is None


@pytest.mark.parametrize("listen", ["7400", "'host:'", ":7400", "h:0", "h:65536", "a b:7400", "::1:7400",
                                    "'[nope]:7400'", "1.2.3:7400", "h:74x"])
def test_hub_serve_listen_must_be_host_and_port(listen):
    with pytest.raises(ConfigError) as e:
        parse_config_text(f"hub:\n  serve:\n    listen: {listen}\n", "config.yaml", Path("/x"))
    assert e.value.problems == ["config.yaml:3: hub.serve.listen: must be HOST:PORT, such as 0.0.0.0:7400, "
                                "127.0.0.1:7400 or [::]:7400 (port 1 to 65535)"]


def test_hub_serve_listen_only_with_the_embedded_hub():
    text = "hub:\n  url: postgresql://u@h/shoal\n  serve:\n    listen: 0.0.0.0:7400\n"
    with pytest.raises(ConfigError) as e:
        parse_config_text(text, "config.yaml", Path("/x"))
    assert e.value.problems == ["config.yaml:4: hub.serve.listen: only the device whose daemon owns the "
                                "embedded hub serves it: set it only with hub.url: embedded"]


def test_hub_serve_unknown_key_and_shape():
    with pytest.raises(ConfigError) as e:
        parse_config_text("hub:\n  serve:\n    port: 1\n", "config.yaml", Path("/x"))
    assert e.value.problems == ["config.yaml:3: hub.serve.port: unknown key (allowed: listen)"]
    with pytest.raises(ConfigError) as e:
        parse_config_text("hub:\n  serve: 0.0.0.0:7400\n", "config.yaml", Path("/x"))
    assert e.value.problems == ["config.yaml:2: hub.serve: must be a mapping (keys: listen)"]


@pytest.mark.parametrize("serve", [None, "0.0.0.0:7400"])
def test_default_config_text_with_serve_reads_back(serve):
    config = parse_config_text(default_config_text("dev", serve=serve), "config.yaml", Path("/x"))
    assert config.hub.serve_listen == serve
