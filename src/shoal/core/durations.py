"""Durations as written in the config file and on the command line: `500ms`, `10s`, `5m`, `1h`,
`30d`; and points in time (`shoal restore --at`): ISO 8601, or a duration meaning that long ago.

Owns the duration syntax (SPEC "Configuration": durations accept 500ms, 10s, 5m, 1h) and its
inverse. A bare number means seconds, because YAML hands `interval: 30` over as a number.
Pure: stdlib only, no I/O.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from decimal import Decimal

DURATION_HINT = "must be a duration such as 500ms, 10s, 5m or 1h"

# Largest unit first: format_duration prefers it when two spellings are equally short.
_UNIT_SECONDS: dict[str, float] = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}

# Plain decimal digits only: no sign, no exponent, no inner spaces, lower-case units, so that
# "1e3s", "-5s" or "5 M" are refused rather than guessed at.
_DURATION_RE = re.compile(r"(?P<number>\d+(?:\.\d*)?|\.\d+)(?P<unit>ms|s|m|h|d)?")


def parse_duration(text: str | int | float) -> float:
    """Return the number of seconds that `text` stands for.

    Accepts `500ms`, `10s`, `1.5s`, `5m`, `1h`, `30d`, a bare number of seconds (`30`, `"2.5"`) and
    an int or float (as YAML produces them). Surrounding whitespace is ignored.

    Raises ValueError ("must be a duration such as 500ms, 10s, 5m or 1h (got ...)") for
    anything else, including negative, infinite or NaN values and booleans.
    """
    if isinstance(text, bool):
        raise ValueError(_problem(text))
    if isinstance(text, (int, float)):
        try:
            seconds = float(text)
        except OverflowError:
            raise ValueError(_problem(text)) from None
        return _checked(seconds, text)
    if not isinstance(text, str):
        raise ValueError(_problem(text))
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(_problem(text))
    number = float(match["number"])
    unit = match["unit"] or "s"
    # Divide for milliseconds: 7/1000 is the float nearest 0.007, 7*0.001 is not.
    seconds = number / 1000 if unit == "ms" else number * _UNIT_SECONDS[unit]
    return _checked(seconds, text)


def format_duration(seconds: float) -> str:
    """Return the shortest spelling of `seconds` that parse_duration reads back exactly.

    A whole number of some unit is preferred to a decimal, then the shorter text, then the
    larger unit: 300 -> "5m", 0.5 -> "500ms", 1.5 -> "1500ms", 5400 -> "90m", 0 -> "0s",
    0.00001 -> "0.01ms".

    Raises ValueError for a negative, infinite or NaN value, or a non-number.
    """
    value = amount_to_format(seconds, "a duration")
    if value == 0:
        return "0s"
    candidates: list[tuple[int, bool, int, str]] = []
    for rank, (unit, factor) in enumerate(_UNIT_SECONDS.items()):
        amount = value * 1000 if unit == "ms" else value / factor
        if not math.isfinite(amount):
            continue
        spelled = plain_decimal(amount) + unit
        try:
            exact = parse_duration(spelled) == value
        except ValueError:  # read back, it overflows to infinity
            exact = False
        if exact:
            candidates.append(("." in spelled, len(spelled), rank, spelled))
    if not candidates:
        # Always exact: the shortest repr of a float reads back as the same float.
        return plain_decimal(value) + "s"
    return min(candidates)[3]


def amount_to_format(number: object, what: str) -> float:
    """`number` as a float to spell as `what` ("a duration", "a rate"). Raises ValueError for a
    negative, infinite or NaN value, or a non-number."""
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise ValueError(f"cannot format {number!r} as {what}: not a number")
    try:
        value = float(number)
    except OverflowError:
        raise ValueError(f"cannot format {number!r} as {what}: too large") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"cannot format {number!r} as {what}: must be finite and >= 0")
    return value


def plain_decimal(number: float) -> str:
    """The shortest decimal spelling of `number` without an exponent ("1e-05" -> "0.00001")."""
    if number == int(number) and abs(number) < 1e16:
        return str(int(number))
    spelled = format(Decimal(repr(number)), "f")
    if "." in spelled:
        spelled = spelled.rstrip("0").rstrip(".")
    return spelled


def _checked(seconds: float, original: object) -> float:
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise ValueError(_problem(original))
    return seconds


def _problem(original: object) -> str:
    shown = repr(original)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{DURATION_HINT} (got {shown})"


WHEN_HINT = "must be a time: ISO 8601 (2026-11-30T14:00, 2026-11-30T14:00:00+01:00) or how long ago (2h, 3d)"


def parse_when(text: str, now: datetime) -> datetime:
    """The point in time `text` names: an ISO 8601 date or date-time (without a zone: in `now`'s
    zone), or a duration meaning that long before `now` (`2h`, `3d`, `90m ago`). `now` must be
    timezone-aware; so is the result. Raises ValueError (WHEN_HINT) for anything else."""
    raw = text.strip()
    try:
        seconds = parse_duration(raw.removesuffix(" ago").strip())
    except ValueError:
        pass
    else:
        try:
            return now - timedelta(seconds=seconds)
        except OverflowError:
            raise ValueError(f"{WHEN_HINT} (got {text!r})") from None
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError:
        raise ValueError(f"{WHEN_HINT} (got {text!r})") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=now.tzinfo)
