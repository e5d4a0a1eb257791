"""Configuration: YAML file -> frozen dataclasses, default paths per platform.

(Skeleton: the loader is being written; the dataclasses below are the contract other
modules code against.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MODES = ("send-only", "receive-only", "send-receive")
CONFLICT_POLICIES = ("keep-both", "newest-wins")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class DeviceConfig:
    name: str


@dataclass(frozen=True)
class HubConfig:
    url: str = "embedded"  # "embedded" or a libpq URL
    password_env: str | None = None
    password_file: Path | None = None


@dataclass(frozen=True)
class FolderConfig:
    id: str
    path: Path  # expanded (~), absolute
    mode: str = "send-receive"
    ignore: tuple[str, ...] = ()


@dataclass(frozen=True)
class SyncConfig:
    interval: float = 300.0  # seconds
    debounce: float = 1.0  # seconds
    conflict: str = "keep-both"
    trash_days: int = 30


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
