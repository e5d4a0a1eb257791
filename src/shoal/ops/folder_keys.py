"""The keys of encrypted folders from the command line: `shoal folder passphrase` re-wraps a
folder's key under a new passphrase (the content stays as it is: only the wrapping changes),
and `shoal join` checks that the passphrase it was given opens the keys of the folders it joins.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from shoal.app import LocalDevice
from shoal.config import FolderConfig, load_config, read_passphrase, read_secret_file, yaml_string
from shoal.core.sealing import key_fingerprint, unwrap_key, wrap_key
from shoal.errors import FolderKeyProblem, UsageError, WrongPassphrase
from shoal.localstore.store import folder_key_meta
from shoal.platform import write_file_atomic
from shoal.sync.sealed import open_folder_key


def _encrypted_folder(device: LocalDevice, folder_id: str) -> FolderConfig:
    f = device.config.folder(folder_id)
    if f is None:
        raise UsageError(f"no folder with id {folder_id!r} in {device.config.path}")
    if not f.encrypted:
        raise UsageError(f"folder {folder_id} is not encrypted (its config has no encryption.passphrase_file)")
    return f


def change_passphrase(device: LocalDevice, folder_id: str, new_file: Path) -> None:
    """Re-wrap the folder's key on the hub under the passphrase in `new_file` (checked like the
    folder's own passphrase file: mode 0600), then point this device's config at `new_file`.
    Raises UsageError, ConfigError, FolderKeyProblem (the current passphrase does not open the
    key, or the hub's key is not this device's), HubError."""
    f = _encrypted_folder(device, folder_id)
    new_file = new_file.expanduser().resolve()
    new = read_secret_file(new_file, "--new-file", "passphrase file")
    old = read_passphrase(f)
    hub = device.open_hub()
    try:
        hub.register(device.config.device.name)
        for _ in range(3):
            wrapped, _history = hub.folder_key(f.id)
            if wrapped is None:
                raise UsageError(f"folder {f.id} has no key on the hub yet: sync it once (`shoal sync --now`) first")
            try:
                key = unwrap_key(wrapped, old)
            except WrongPassphrase:
                raise WrongPassphrase(f"folder {f.id}: the passphrase in {f.passphrase_file} does not open the "
                                      "folder's key on the hub: nothing changed") from None
            pinned = device.store.get_meta(folder_key_meta(f.id))
            if pinned is not None and pinned != key_fingerprint(key):
                raise FolderKeyProblem(f"folder {f.id}: the key on the hub is not the one this device has "
                                       "synced with: nothing changed")
            if hub.set_folder_key(f.id, wrap_key(key, new, os.urandom), wrapped):
                break
        else:
            raise FolderKeyProblem(f"folder {f.id}: the hub's key kept changing: nothing changed, try again")
    finally:
        hub.close()
    _point_config_at(device.config.path, f, new_file)


_PASSPHRASE_VALUE = re.compile(r"""(passphrase_file\s*:\s*)("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s,}#]+)""")


def _point_config_at(config_path: Path, f: FolderConfig, new_file: Path) -> None:
    """Set the folder's encryption.passphrase_file to `new_file` in the config file, on the line
    that sets it now (the rest of the file, comments included, stays as it is)."""
    lines = config_path.read_text(encoding="utf-8").splitlines(keepends=True)
    index = (f.passphrase_line or 0) - 1
    done = False
    if 0 <= index < len(lines):
        line, n = _PASSPHRASE_VALUE.subn(lambda m: m.group(1) + yaml_string(str(new_file)), lines[index], count=1)
        if n:
            lines[index] = line
            text = "".join(lines)
            write_file_atomic(config_path, text, mode=os.stat(config_path).st_mode & 0o777)
            folder = load_config(config_path).folder(f.id)
            done = folder is not None and folder.passphrase_file == new_file
    if not done:
        raise UsageError(f"the passphrase of folder {f.id} was changed on the hub, but {config_path} could not "
                         f"be updated: set its encryption.passphrase_file to {new_file}")


def check_folder_keys(device: LocalDevice, folder_ids: tuple[str, ...]) -> None:
    """Open the keys of these encrypted folders with their passphrases (a new device joining:
    a wrong passphrase is said now, not at the first sync). Raises FolderKeyProblem, HubError."""
    hub = device.open_hub()
    try:
        for folder_id in folder_ids:
            open_folder_key(hub, _encrypted_folder(device, folder_id), device.store)
    finally:
        hub.close()
