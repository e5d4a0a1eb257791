"""What holds syncing back while watching and indexing go on: the run conditions of the config
(`sync.when`: Wi-Fi only, charging only, a minimum battery level, hours of the day) and the
user's pause (`shoal pause [--folder ID] [--for DURATION]`).

Pure: the reading of the machine's state (Wi-Fi, charger, battery), the local time of day and
`now` are passed in; reading them is the daemon's business (shoal.daemon.conditions), storing
the pause the app's (shoal.app). A condition that cannot be read never holds sync back.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from datetime import time
from typing import NamedTuple

DAY_MINUTES = 24 * 60
HOURS_HINT = 'must be a local time window HH:MM-HH:MM, such as "22:00-07:00" (it may wrap midnight)'
_HOURS_RE = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")

WIFI, CHARGING, BATTERY = "wifi", "charging", "battery"


def parse_hours(text: str) -> tuple[int, int]:
    """`"22:00-07:00"` -> (start, end) in minutes after midnight, the end excluded; a window
    whose end is before its start wraps midnight; `24:00` may end a window (`00:00-24:00`: all
    day). Raises ValueError (HOURS_HINT) for anything else, including an empty window."""
    match = _HOURS_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{HOURS_HINT} (got {text!r})")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if h1 > 23 or m1 > 59 or m2 > 59 or end > DAY_MINUTES or start == end:
        raise ValueError(f"{HOURS_HINT} (got {text!r})")
    return start, end


def format_hours(window: tuple[int, int]) -> str:
    """(start, end) minutes -> `"HH:MM-HH:MM"` (parse_hours reads it back). Raises nothing."""
    return "-".join(f"{m // 60:02d}:{m % 60:02d}" for m in window)


def in_window(window: tuple[int, int], at: time) -> bool:
    """Whether the local time of day `at` falls in the window (start included, end not)."""
    start, end = window
    minute = at.hour * 60 + at.minute
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end


@dataclass(frozen=True)
class RunConditions:
    """`sync.when`: sync only on Wi-Fi, only while charging, only above a battery level,
    only within a window of local time (None: at any time)."""

    wifi_only: bool = False
    charging_only: bool = False
    min_battery: int = 0  # percent; 0: no minimum
    hours: tuple[int, int] | None = None

    @property
    def any(self) -> bool:
        """Whether any condition is set (an all-day window is none)."""
        return (self.wifi_only or self.charging_only or self.min_battery > 0
                or (self.hours is not None and self.hours != (0, DAY_MINUTES)))


class Reading(NamedTuple):
    """The machine's state as far as it could be read; None: cannot be read here."""

    wifi: bool | None = None
    charging: bool | None = None  # on a charger (also when full, or held at a charge limit)
    battery: int | None = None  # percent


def needed_readings(conds: RunConditions) -> frozenset[str]:
    """What must be read to evaluate `conds` (WIFI, CHARGING, BATTERY): nothing is probed that
    no condition asks for. A battery minimum also reads the charger (charging lifts it)."""
    needed = set()
    if conds.wifi_only:
        needed.add(WIFI)
    if conds.charging_only:
        needed.add(CHARGING)
    if conds.min_battery > 0:
        needed |= {BATTERY, CHARGING}
    return frozenset(needed)


@dataclass(frozen=True)
class Verdict:
    may_sync: bool
    waiting_for: tuple[str, ...] = ()  # what is waited for: "Wi-Fi", "charging", "battery at 30% (now 12%)", ...
    unreadable: tuple[str, ...] = ()  # conditions set that cannot be read here (they do not hold back)

    def text(self) -> str:
        """`waiting for Wi-Fi and charging` (empty when nothing is waited for)."""
        if not self.waiting_for:
            return ""
        shown = [f"the hours {w}" if w[:1].isdigit() else w for w in self.waiting_for]
        if len(shown) == 1:
            return f"waiting for {shown[0]}"
        return f"waiting for {', '.join(shown[:-1])} and {shown[-1]}"


def evaluate(conds: RunConditions, reading: Reading, at: time) -> Verdict:
    """Whether sync may run now under `conds`, given `reading` and the local time of day `at`;
    if not, what is waited for. A condition whose reading is None does not hold sync back (it
    is listed in `unreadable`). A battery below the minimum does not hold back while charging."""
    waiting: list[str] = []
    unreadable: list[str] = []
    if conds.wifi_only:
        if reading.wifi is None:
            unreadable.append("Wi-Fi")
        elif not reading.wifi:
            waiting.append("Wi-Fi")
    if conds.charging_only:
        if reading.charging is None:
            unreadable.append("charging")
        elif not reading.charging:
            waiting.append("charging")
    if conds.min_battery > 0:
        if reading.battery is None:
            unreadable.append("battery level")
        elif reading.battery < conds.min_battery and reading.charging is not True:
            waiting.append(f"battery at {conds.min_battery}% (now {reading.battery}%)")
    if conds.hours is not None and not in_window(conds.hours, at):
        waiting.append(format_hours(conds.hours))
    return Verdict(not waiting, tuple(waiting), tuple(unreadable))


# --- the user's pause -----------------------------------------------------------------------


class Pause(NamedTuple):
    since: float  # epoch seconds
    until: float | None  # epoch seconds; None: until `shoal resume`

    def active(self, now: float) -> bool:
        return self.until is None or now < self.until


def _longer(a: Pause, b: Pause) -> bool:
    """Whether pause `a` holds at least as long as `b`."""
    return a.until is None or (b.until is not None and a.until >= b.until)


@dataclass(frozen=True)
class PauseState:
    """The user's pauses: the whole device and single folders, each maybe with an expiry."""

    device: Pause | None = None
    folders: dict[str, Pause] = field(default_factory=dict)

    def paused(self, folder_id: str | None, *, until: float | None, now: float) -> PauseState:
        """Pause the whole device (folder_id None) or one folder, until `until` (None: until
        resumed); replaces that scope's earlier pause. Expired pauses are dropped."""
        state = self.pruned(now)
        pause = Pause(now, until)
        if folder_id is None:
            return replace(state, device=pause)
        return replace(state, folders={**state.folders, folder_id: pause})

    def resumed(self, folder_id: str | None, *, keep_folders: bool = False) -> PauseState:
        """Resume one folder, or (None) the whole device and, unless `keep_folders`, every
        folder paused on its own."""
        if folder_id is None:
            return PauseState(None, dict(self.folders) if keep_folders else {})
        return replace(self, folders={k: v for k, v in self.folders.items() if k != folder_id})

    def pruned(self, now: float) -> PauseState:
        """Without the pauses that have ended by `now`."""
        device = self.device if self.device is not None and self.device.active(now) else None
        return PauseState(device, {k: v for k, v in self.folders.items() if v.active(now)})

    def holding(self, folder_id: str, now: float) -> tuple[Pause, bool] | None:
        """The pause that holds `folder_id` back at `now` and whether it is the whole device's
        (the one that lasts longer when both do), or None."""
        device = self.device if self.device is not None and self.device.active(now) else None
        own = self.folders.get(folder_id)
        own = own if own is not None and own.active(now) else None
        if device is not None and (own is None or _longer(device, own)):
            return device, True
        if own is not None:
            return own, False
        return None

    def to_json(self) -> dict:
        def one(p: Pause) -> dict:
            return {"since": p.since, "until": p.until}
        return {"device": one(self.device) if self.device else None,
                "folders": {k: one(v) for k, v in sorted(self.folders.items())}}

    @classmethod
    def from_json(cls, data: object) -> PauseState:
        """Read what to_json wrote. Whatever cannot be read is no pause (a damaged file never
        stops anything); raises nothing."""
        if not isinstance(data, dict):
            return cls()
        folders = data.get("folders")
        return cls(_pause(data.get("device")),
                   {k: p for k, v in folders.items() if isinstance(k, str) and (p := _pause(v)) is not None}
                   if isinstance(folders, dict) else {})


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _pause(data: object) -> Pause | None:
    if not isinstance(data, dict):
        return None
    since = _number(data.get("since"))
    until = data.get("until")
    if since is None or (until is not None and _number(until) is None):
        return None
    return Pause(since, None if until is None else float(until))
