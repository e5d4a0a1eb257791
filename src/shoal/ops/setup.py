"""Setting this device up: a new config, store, folders and registration (`shoal init`), and
the background service (`shoal service install` / `uninstall`). Each returns what happened;
the CLI words it."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shoal.app import LocalDevice, default_device_name
from shoal.config import default_config_text, default_state_dir, load_config, parse_config_text, write_new_config
from shoal.errors import ConfigError, ShoalError
from shoal.scan.scanner import check_marker


def write_init_config(path: Path, device_name: str | None, hub_url: str | None,
                      folders: Sequence[tuple[str, str]], serve: str | None = None) -> None:
    """Write a new config file for `shoal init`: `device_name` (default: the host name),
    `hub_url` (default: embedded), `folders` as (id, path) pairs (default: `default` at
    ~/Shoal), `serve` (hub.serve.listen, HOST:PORT; default: not served). The text is
    validated before anything is written.

    Raises ConfigError (bad input), UsageError (the file exists) or ShoalError (not writable).
    """
    text = default_config_text(device_name or default_device_name(), hub_url or "embedded",
                               folders or (("default", "~/Shoal"),), serve=serve)
    parse_config_text(text, path.name, path.parent)  # refuse bad input before writing anything
    write_new_config(path, text)


@dataclass
class InitResult:
    device_name: str
    device_id: str
    state_dir: Path
    #: (folder id, why it cannot sync yet) for each folder whose directory or marker failed
    folder_problems: list[tuple[str, str]] = field(default_factory=list)
    #: why the device could not register at the hub now (None: registered)
    not_registered: str | None = None


def init_device(config_path: Path) -> InitResult:
    """Set up the device of a newly written config: create the store, each folder and its
    marker, and register at the hub. A hub that cannot be reached is no failure (the device
    registers on its first sync): it is reported in the result.

    Raises ConfigError (the config) or ShoalError (the store)."""
    device = LocalDevice(load_config(config_path))
    try:
        problems = []
        for f in device.config.folders:
            reason = check_marker(device.store, f.id, f.path)  # creates the folder and its marker
            if reason:
                problems.append((f.id, reason))
        result = InitResult(device.config.device.name, device.store.device_id,
                            device.config.state_dir, problems)
        try:
            hub = device.open_hub()
            try:
                hub.register(device.config.device.name)
            finally:
                hub.close()
        except ShoalError as e:
            result.not_registered = str(e)
        return result
    finally:
        device.close()


def install_service(config_path: Path, explicit_config: bool, env: Mapping[str, str] = os.environ,
                    sys_platform: str = sys.platform) -> list[str]:
    """Install the background service for this platform; returns the lines to show.

    The service runs `shoal run`, with `--config` only if the user chose the config file
    (`explicit_config`: --config or $SHOAL_CONFIG), and logs to the config's state dir (the
    default state dir if the config cannot be read now). Raises UsageError or ShoalError."""
    # Imported here: service_unit's xml.sax.saxutils pulls in urllib.request, ssl and email
    # (about 30 ms), which no other command should pay for.
    from shoal.ops import service_unit

    platform = service_unit.detect_platform(env, sys_platform)
    paths = service_unit.env_paths(env)
    config_path = config_path.resolve()
    try:
        state_dir = load_config(config_path).state_dir
    except ConfigError:
        state_dir = default_state_dir(env)
    return service_unit.install(platform, Path.home(), service_unit.default_exec_argv(),
                                config_path if explicit_config else None, state_dir, **paths)


def uninstall_service(env: Mapping[str, str] = os.environ, sys_platform: str = sys.platform) -> list[str]:
    """Stop and remove the background service for this platform; returns the lines to show."""
    from shoal.ops import service_unit  # see install_service

    return service_unit.uninstall(service_unit.detect_platform(env, sys_platform), Path.home(),
                                  **service_unit.env_paths(env))
