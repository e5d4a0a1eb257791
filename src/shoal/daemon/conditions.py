"""Reading the machine's state for the run conditions (`sync.when`, core.conditions): Wi-Fi,
charger, battery level.

On Termux through termux-api (`termux-wifi-connectioninfo`, `termux-battery-status`, found on
PATH); on Linux through /sys/class/power_supply and NetworkManager (`nmcli`) where present.
What cannot be read is None, which never holds sync back. Commands run with a short timeout;
readings are kept for READING_TTL seconds, and a source that timed out is left alone for
STALL_PAUSE seconds (termux-api hangs when the Termux:API app is missing), so the daemon is
never held up for long. `shoal doctor` asks the same probe what it can read here.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from shoal.core.conditions import BATTERY, CHARGING, WIFI, Reading

log = logging.getLogger("shoal.conditions")

POWER_SUPPLY = Path("/sys/class/power_supply")
TERMUX_COMMANDS = {WIFI: "termux-wifi-connectioninfo", CHARGING: "termux-battery-status",
                   BATTERY: "termux-battery-status"}
NMCLI = "nmcli"
PROBE_TIMEOUT = 5.0  # seconds a command may take
READING_TTL = 10.0  # seconds a reading is kept
STALL_PAUSE = 300.0  # seconds a command that timed out is not run again
_WIRED_OR_WIFI = ("wifi", "ethernet", "802-11-wireless", "802-3-ethernet")


def parse_termux_wifi(text: str) -> bool | None:
    """termux-wifi-connectioninfo's JSON -> on Wi-Fi (supplicant_state COMPLETED) or not;
    None if it cannot be read."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    state = data.get("supplicant_state") if isinstance(data, dict) else None
    return None if not isinstance(state, str) else state.upper() == "COMPLETED"


def parse_termux_battery(text: str) -> tuple[bool | None, int | None]:
    """termux-battery-status's JSON -> (on the charger, percent). On the charger: `plugged` is
    not UNPLUGGED (also when full or held at a charge limit: NOT_CHARGING); without `plugged`,
    `status` CHARGING or FULL."""
    try:
        data = json.loads(text)
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    percent = data.get("percentage")
    battery = percent if isinstance(percent, int) and not isinstance(percent, bool) and 0 <= percent <= 100 else None
    plugged, status = data.get("plugged"), data.get("status")
    if isinstance(plugged, str):
        charging: bool | None = plugged.upper() != "UNPLUGGED"
    elif isinstance(status, str):
        charging = status.upper() in ("CHARGING", "FULL")
    else:
        charging = None
    return charging, battery


def parse_nmcli_devices(text: str) -> bool | None:
    """`nmcli -t -f TYPE,STATE device` -> whether a Wi-Fi or wired device is connected (a wired
    network is not mobile data either); None if nothing was listed."""
    seen = False
    for line in text.splitlines():
        kind, sep, state = line.partition(":")
        if not sep:
            continue
        seen = True
        if kind.strip() in _WIRED_OR_WIFI and state.strip().startswith("connected"):
            return True
    return False if seen else None


def read_power_supply(root: Path) -> tuple[bool | None, int | None]:
    """/sys/class/power_supply -> (on the charger, battery percent), None where not known. On
    the charger: a mains or USB supply is online; without those, a battery Charging or Full."""
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return None, None

    def read(entry: Path, name: str) -> str | None:
        try:
            return (entry / name).read_text().strip()
        except (OSError, UnicodeDecodeError):
            return None

    online: list[bool] = []
    states: list[str] = []
    levels: list[int] = []
    for entry in entries:
        kind = read(entry, "type")
        if kind == "Battery":
            capacity = read(entry, "capacity")
            if capacity and capacity.isdigit():
                levels.append(min(int(capacity), 100))
            status = read(entry, "status")
            if status:
                states.append(status)
        elif kind is not None:
            value = read(entry, "online")
            if value in ("0", "1"):
                online.append(value == "1")
    if online:
        charging: bool | None = any(online)
    elif states:
        charging = any(s in ("Charging", "Full") for s in states)
    else:
        charging = None
    return charging, (round(sum(levels) / len(levels)) if levels else None)


class ConditionProbe:
    """Reads what the run conditions need, with a cache (see the module docstring). `env`
    (PATH) and `power_supply` are the machine's unless given (tests). Not thread-safe: one
    owner (the daemon's loop, or doctor)."""

    def __init__(self, *, env: Mapping[str, str] | None = None, power_supply: Path | None = None,
                 timeout: float = PROBE_TIMEOUT, ttl: float = READING_TTL):
        self.env = env
        self.power_supply = power_supply
        self.timeout = timeout
        self.ttl = ttl
        self._cache: dict[str, tuple[float, object]] = {}  # reading -> (when, value)
        self._stalled: dict[str, float] = {}  # command -> when it timed out

    def _path(self) -> str | None:
        return (self.env if self.env is not None else os.environ).get("PATH")

    def _which(self, name: str) -> str | None:
        return shutil.which(name, path=self._path())

    def _root(self) -> Path:
        return self.power_supply if self.power_supply is not None else POWER_SUPPLY

    def sources(self) -> dict[str, str | None]:
        """Where each reading would come from here (a command, the sysfs dir), or None."""
        root = self._root()
        charging, battery = read_power_supply(root)
        return {
            WIFI: TERMUX_COMMANDS[WIFI] if self._which(TERMUX_COMMANDS[WIFI])
            else NMCLI if self._which(NMCLI) else None,
            CHARGING: TERMUX_COMMANDS[CHARGING] if self._which(TERMUX_COMMANDS[CHARGING])
            else str(root) if charging is not None else None,
            BATTERY: TERMUX_COMMANDS[BATTERY] if self._which(TERMUX_COMMANDS[BATTERY])
            else str(root) if battery is not None else None,
        }

    def _run(self, argv: list[str], now: float) -> str | None:
        """A command's stdout, or None (missing, failed, timed out, or timed out recently)."""
        exe = self._which(argv[0])
        if exe is None:
            return None
        stalled = self._stalled.get(argv[0])
        if stalled is not None and now - stalled < STALL_PAUSE:
            return None
        try:
            proc = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=self.timeout,
                                  stdin=subprocess.DEVNULL,
                                  env={**os.environ, **(self.env or {})})
        except subprocess.TimeoutExpired:
            self._stalled[argv[0]] = now
            log.warning("%s did not answer within %.0fs; not asked again for %.0f minutes", argv[0],
                        self.timeout, STALL_PAUSE / 60)
            return None
        except OSError as e:
            log.debug("%s: %s", argv[0], e)
            return None
        return proc.stdout if proc.returncode == 0 else None

    def read(self, needed: Iterable[str], now: float) -> Reading:
        """What `needed` (WIFI, CHARGING, BATTERY) says at `now` (a monotonic clock), read again
        when older than the ttl. Raises nothing."""
        needed = set(needed)
        stale = {k for k in needed if k not in self._cache or now - self._cache[k][0] >= self.ttl}
        if WIFI in stale:
            text = self._run([TERMUX_COMMANDS[WIFI]], now)
            if text is not None or self._which(TERMUX_COMMANDS[WIFI]):
                wifi = parse_termux_wifi(text) if text is not None else None
            else:
                text = self._run([NMCLI, "-t", "-f", "TYPE,STATE", "device"], now)
                wifi = parse_nmcli_devices(text) if text is not None else None
            self._cache[WIFI] = (now, wifi)
        if stale & {CHARGING, BATTERY}:
            if self._which(TERMUX_COMMANDS[BATTERY]):
                text = self._run([TERMUX_COMMANDS[BATTERY]], now)
                charging, battery = parse_termux_battery(text) if text is not None else (None, None)
            else:
                charging, battery = read_power_supply(self._root())
            self._cache[CHARGING] = (now, charging)
            self._cache[BATTERY] = (now, battery)

        def value(key: str):
            return self._cache[key][1] if key in needed and key in self._cache else None

        return Reading(wifi=value(WIFI), charging=value(CHARGING), battery=value(BATTERY))
