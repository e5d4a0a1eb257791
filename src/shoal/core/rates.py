"""Transfer rates as written in the config file (`sync.max_upload_rate`, `sync.max_download_rate`):
`500KB/s`, `2MB/s`, `1.5MiB/s`, a bare number of bytes per second, and 0 (or `unlimited`) for
no limit; and their inverse, for `shoal status`.

Units: decimal prefixes are decimal and binary prefixes binary, as on a disk label: `KB` (or
`kB`) = 1000 bytes, `MB` = 1000², `GB` = 1000³; `KiB` = 1024, `MiB` = 1024², `GiB` = 1024³.
(Syncthing's GUI limits are in KiB/s: `500KiB/s` says the same here.) `B` is a byte: a lower-case
`b` (bits) is refused rather than guessed at, so `500kb/s` is an error. The `/s` may be left out
and a space may stand between the number and the unit.
Pure: stdlib only, no I/O.
"""

from __future__ import annotations

import math
import re

from shoal.core.durations import amount_to_format, plain_decimal

RATE_HINT = "must be a rate such as 500KB/s, 2MB/s or 1.5MiB/s (KB = 1000 bytes, KiB = 1024), or 0 for unlimited"

_UNIT_BYTES: dict[str, int] = {
    "GB": 1000**3, "GiB": 1024**3, "MB": 1000**2, "MiB": 1024**2,
    "KB": 1000, "kB": 1000, "KiB": 1024, "B": 1,
}

_RATE_RE = re.compile(r"(?P<number>\d+(?:\.\d*)?|\.\d+)(?:\s?(?P<unit>[GMKk]i?B|B)(?:/s)?)?")


def parse_rate(text: str | int | float) -> float:
    """Return the bytes per second that `text` stands for; 0.0 means unlimited.

    Accepts `500KB/s`, `2MB/s`, `1.5MiB/s`, `500 KiB/s`, `2MB`, a bare number of bytes per second
    (`1000000`, as YAML may hand it over as an int or float), `0` and `unlimited`. Surrounding
    whitespace is ignored.

    Raises ValueError (RATE_HINT, then what was given) for anything else: negative, infinite or
    NaN values, booleans, bits (`kb/s`), unknown units (`5TB/s`, `5K/s`), exponents.
    """
    if isinstance(text, bool):
        raise ValueError(_problem(text))
    if isinstance(text, (int, float)):
        try:
            value = float(text)
        except OverflowError:
            raise ValueError(_problem(text)) from None
        return _checked(value, text)
    if not isinstance(text, str):
        raise ValueError(_problem(text))
    stripped = text.strip()
    if stripped == "unlimited":
        return 0.0
    match = _RATE_RE.fullmatch(stripped)
    if match is None or (match["unit"] == "kiB"):
        raise ValueError(_problem(text))
    unit = match["unit"] or "B"
    if unit not in _UNIT_BYTES:
        raise ValueError(_problem(text))
    return _checked(float(match["number"]) * _UNIT_BYTES[unit], text)


def format_rate(bytes_per_second: float) -> str:
    """The shortest spelling of a rate that parse_rate reads back exactly: 1_000_000 ->
    "1 MB/s", 1_048_576 -> "1 MiB/s", 1_500_000 -> "1.5 MB/s", 512 -> "512 B/s"; 0 -> "unlimited".
    A number of at least 1 beats a fraction ("500 KB/s", not "0.5 MB/s"), then the shorter text
    wins, then the larger unit (decimal before binary).
    Raises ValueError for a negative, infinite or NaN value, or a non-number.
    """
    value = amount_to_format(bytes_per_second, "a rate")
    if value == 0:
        return "unlimited"
    candidates: list[tuple[bool, int, int, str]] = []
    for rank, (unit, factor) in enumerate(_UNIT_BYTES.items()):
        if unit == "kB":
            continue
        spelled = f"{plain_decimal(value / factor)} {unit}/s"
        try:
            exact = parse_rate(spelled) == value
        except ValueError:
            exact = False
        if exact:
            candidates.append((value < factor, len(spelled), rank, spelled))
    if not candidates:
        return f"{plain_decimal(value)} B/s"  # the shortest repr of a float reads back as itself
    return min(candidates)[3]


def _checked(value: float, original: object) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError(_problem(original))
    return value


def _problem(original: object) -> str:
    shown = repr(original)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{RATE_HINT} (got {shown})"


def limit_text(bytes_per_second: float) -> str | None:
    """A limit as `shoal status` shows it: format_rate, or None for no limit (0)."""
    return format_rate(bytes_per_second) if bytes_per_second else None
