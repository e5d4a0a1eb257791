"""Folder-relative paths: normalising local paths, refusing unsafe remote ones, trash names.

Owns the rules of SPEC "Sync semantics" (paths are `/`-separated and NFC-normalised) and
"Bad input" (which remote paths are refused), plus the stricter rules of DESIGN "Writing files
safely" (Windows reserved names and characters, trailing dots or spaces, 255-byte components).
Every function here is pure: it never looks at the disk. Whether a path would escape the folder
through a symlink that exists on disk is the writer's job (open with O_NOFOLLOW).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta, timezone

from shoal.errors import PathRefused

#: The folder's own directory; never synced, refused as a remote path component.
SHOAL_DIR = ".shoal"
#: Where remote files are written before being renamed into place (partial downloads).
TMP_DIR = SHOAL_DIR + "/tmp"
#: Where replaced and deleted files are kept for `trash_days`.
TRASH_DIR = SHOAL_DIR + "/trash"
#: The marker that proves a folder is mounted and is the folder it claims to be.
FOLDER_ID_FILE = SHOAL_DIR + "/folder-id"

MAX_PATH_BYTES = 4096
MAX_COMPONENT_BYTES = 255

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_DATETIME_MIN = datetime(1, 1, 1, tzinfo=timezone.utc)
_DATETIME_MAX = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
_NS_PER_S = 1_000_000_000
_MIN_PLAUSIBLE_MTIME_NS = 315_532_800 * _NS_PER_S  # 1980-01-01T00:00:00Z
_MAX_FUTURE_NS = 86_400 * _NS_PER_S  # one day

_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_WINDOWS_FORBIDDEN = frozenset('<>:"|?*')
# Windows treats these as devices whatever the extension ("nul.txt" is NUL). The superscript
# digits are reserved too (COM¹ ...), and CONIN$/CONOUT$ are console devices.
_WINDOWS_RESERVED = frozenset(
    ["con", "prn", "aux", "nul", "conin$", "conout$"]
    + [f"{dev}{n}" for dev in ("com", "lpt") for n in "123456789\u00b9\u00b2\u00b3"]
)


def normalize_relpath(path: str, os_sep: str = "/") -> str:
    """Turn a folder-relative path as the OS spells it into shoal's form.

    `os_sep` is the separator the path was written with (`os.sep` of the caller); it and `/`
    both become `/`. The result is NFC-normalised (macOS hands out NFD names). Nothing else is
    changed or checked: use `validate_remote_path` for that. Raises nothing.
    """
    if os_sep and os_sep != "/":
        path = path.replace(os_sep, "/")
    return unicodedata.normalize("NFC", path)


def _refuse(path: object, reason: str) -> PathRefused:
    return PathRefused(f"path refused: {reason}", path=path if isinstance(path, str) else None)


def component_problem(component: str) -> str | None:
    """The reason one path component cannot be created safely, or None if it can.

    The per-component rules of `validate_remote_path`; the component must already be
    encodable as UTF-8. Raises nothing.
    """
    if component == "":
        return "has an empty component"
    if component == ".":
        return "has a '.' component"
    if component == "..":
        return "contains '..'"
    if component.casefold() == SHOAL_DIR:
        return "contains '.shoal'"
    if len(component.encode("utf-8")) > MAX_COMPONENT_BYTES:
        return f"has a component longer than {MAX_COMPONENT_BYTES} bytes"
    bad = sorted(_WINDOWS_FORBIDDEN.intersection(component))
    if bad:
        return f"contains a character Windows forbids ({''.join(bad)})"
    if component.endswith((".", " ")):
        return "has a component ending in a dot or a space"
    device = component.split(".", 1)[0].rstrip(" ").casefold()
    if device in _WINDOWS_RESERVED:
        return f"uses a Windows reserved name ({component})"
    return None


def validate_remote_path(path: object) -> str:
    """Return `path` unchanged if it is safe to create inside a folder.

    Raises PathRefused ("path refused: <rule>") when the path is not a str, is empty, longer
    than 4096 bytes, not valid UTF-8 (surrogates), not NFC-normalised, absolute, starts with a
    drive letter, contains a NUL byte, a control character, a backslash, an empty, `.`, `..` or
    `.shoal` component (any case), a Windows reserved name or forbidden character, a component
    ending in a dot or space, or a component longer than 255 bytes. Raises nothing else.
    """
    if not isinstance(path, str):
        raise _refuse(path, f"not a string ({type(path).__name__})")
    if path == "":
        raise _refuse(path, "empty")
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        raise _refuse(path, "not valid UTF-8 (surrogate code point)") from None
    if len(encoded) > MAX_PATH_BYTES:
        raise _refuse(path, f"longer than {MAX_PATH_BYTES} bytes")
    if "\x00" in path:
        raise _refuse(path, "contains a NUL byte")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        raise _refuse(path, "contains a control character")
    if "\\" in path:
        raise _refuse(path, "contains a backslash")
    if path.startswith("/"):
        raise _refuse(path, "is absolute")
    if _DRIVE_LETTER.match(path):
        raise _refuse(path, "starts with a drive letter")
    if not unicodedata.is_normalized("NFC", path):
        raise _refuse(path, "is not NFC-normalised")
    for component in path.split("/"):
        problem = component_problem(component)
        if problem is not None:
            raise _refuse(path, problem)
    return path


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def validate_sha256(value: object, what: str = "sha256") -> str:
    """Return `value` unchanged if it is a SHA-256 as shoal writes it: 64 lowercase hex digits.

    Every hash a device receives from the hub (of a change, a head, a content, a block) goes
    through this before it is used, so a hash can never smuggle a path, a separator or a
    control character into anything. Raises PathRefused ("path refused: <what> ... is not 64
    lowercase hex digits") otherwise; raises nothing else.
    """
    if not isinstance(value, str):
        raise PathRefused(f"path refused: {what} is not a string ({type(value).__name__})")
    if _SHA256_HEX.fullmatch(value) is None:
        shown = value[:80].encode("unicode_escape").decode("ascii")
        raise PathRefused(f"path refused: {what} {shown!r} is not 64 lowercase hex digits")
    return value


def casefold_key(path: str) -> str:
    """Key under which two paths collide on a case-insensitive (and normalising) filesystem.

    NFC, then casefold, then NFC again (casefolding can denormalise). Raises nothing.
    """
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", path).casefold())


def parent_dirs(path: str) -> list[str]:
    """The directories that must exist for `path`, outermost first: "a/b/c" -> ["a", "a/b"].

    Raises nothing.
    """
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def utc_datetime(seconds: float) -> datetime:
    """Seconds since the epoch as an aware UTC datetime, clamped to years 1..9999.

    Pure arithmetic (no platform `gmtime`), so negative and absurd values never raise;
    NaN is read as the epoch.
    """
    if seconds != seconds:
        return _EPOCH
    try:
        moment = _EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        return _DATETIME_MAX if seconds > 0 else _DATETIME_MIN
    return moment


def utc_datetime_ns(ns: int) -> datetime:
    """Nanoseconds since the epoch as an aware UTC datetime, clamped like `utc_datetime`."""
    try:
        return _EPOCH + timedelta(microseconds=ns // 1000)
    except OverflowError:
        return _DATETIME_MAX if ns > 0 else _DATETIME_MIN


def utc_stamp(moment: datetime) -> str:
    """`YYYYMMDD-HHMMSS` of `moment`, always 15 characters (strftime does not zero-pad years
    before 1000 on every platform). Raises nothing."""
    return (
        f"{moment.year:04d}{moment.month:02d}{moment.day:02d}"
        f"-{moment.hour:02d}{moment.minute:02d}{moment.second:02d}"
    )


def truncate_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of `text` (whole code points) that fits in `max_bytes` of UTF-8.

    A surrogate (an undecodable byte of a local name) counts as 3 bytes, never fewer than it
    takes on disk. Raises nothing.
    """
    used = 0
    for index, ch in enumerate(text):
        used += len(ch.encode("utf-8", errors="surrogatepass"))
        if used > max_bytes:
            return text[:index]
    return text


def trash_relpath(path: str, now_epoch: float) -> str:
    """Where `path` goes inside `.shoal/trash/`: `<path>~<YYYYMMDD-HHMMSS>` (UTC of now_epoch).

    If the stamped last component would exceed 255 bytes its name is shortened (never the
    stamp), so the trash move cannot fail on length. Two trashings of one path in the same
    second give the same name: pass the result through `conflicts.unique_path`. Raises nothing.
    """
    stamp = "~" + utc_stamp(utc_datetime(now_epoch))
    head, sep, name = path.rpartition("/")
    name = truncate_utf8(name, MAX_COMPONENT_BYTES - len(stamp.encode("utf-8")))
    return f"{head}{sep}{name}{stamp}"


_TRASH_STAMP = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})-([0-9]{2})([0-9]{2})([0-9]{2})")


def trash_stamp_epoch(name: str) -> float | None:
    """When a file in the trash was put there: the UTC stamp `trash_relpath` wrote after the
    last `~` of its name, as seconds since the epoch. None when the name carries no valid
    stamp (a file the user put there, a date that does not exist). Raises nothing."""
    match = _TRASH_STAMP.fullmatch(name.rpartition("~")[2])
    if match is None:
        return None
    try:
        moment = datetime(*(int(g) for g in match.groups()), tzinfo=timezone.utc)
    except ValueError:
        return None
    return (moment - _EPOCH).total_seconds()


def metadata_plausible(size: int, mtime_ns: int, now_ns: int) -> bool:
    """False if the metadata cannot be right: negative size, mtime before 1980-01-01 UTC,
    or mtime more than one day after `now_ns`. Such metadata is not a change by itself.
    Raises nothing.
    """
    if size < 0:
        return False
    if mtime_ns < _MIN_PLAUSIBLE_MTIME_NS:
        return False
    return mtime_ns <= now_ns + _MAX_FUTURE_NS
