"""Names of conflict copies and of free alternatives to taken paths.

Owns the conflict-copy name of SPEC "Conflicts":
`<stem>.sync-conflict-<YYYYMMDD>-<HHMMSS>-<device name><.ext>`, in the directory of the
original. A conflict copy syncs to every device like any other file, so its name must pass
`paths.validate_remote_path` whenever the original does; the device name is sanitised and the
stem shortened to make sure of that.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from shoal.core.paths import (
    MAX_COMPONENT_BYTES,
    MAX_PATH_BYTES,
    component_problem,
    truncate_utf8,
    utc_datetime_ns,
    utc_stamp,
)
from shoal.errors import PathRefused

CONFLICT_MARKER = ".sync-conflict-"
#: Longest device name (UTF-8 bytes) kept in a conflict name.
MAX_DEVICE_NAME_BYTES = 63

_CONFLICT_RE = re.compile(re.escape(CONFLICT_MARKER) + r"\d{8}-\d{6}-[^/]+$")
_DEVICE_UNSAFE = frozenset('/\\:*?"<>| ')
_UNIQUE_ATTEMPTS = 1_000_000


def _split_ext(name: str) -> tuple[str, str]:
    """Split a file name on its last dot; a leading dot (".bashrc") is not an extension."""
    dot = name.rfind(".")
    if dot <= 0 or name[:dot].strip(".") == "":
        return name, ""
    return name[:dot], name[dot:]


def sanitize_device_name(device_name: str) -> str:
    """The device name as it appears in a conflict name: never empty, safe inside a component.

    Separators, Windows-forbidden characters, control characters, spaces and code points that
    UTF-8 cannot encode become `-`; trailing dots are stripped; the result is NFC and at most
    63 bytes. Raises nothing.
    """
    chars = []
    for ch in unicodedata.normalize("NFC", device_name):
        code = ord(ch)
        if ch in _DEVICE_UNSAFE or code < 0x20 or code == 0x7F or 0xD800 <= code <= 0xDFFF:
            chars.append("-")
        else:
            chars.append(ch)
    cleaned = unicodedata.normalize("NFC", "".join(chars))
    cleaned = truncate_utf8(cleaned, MAX_DEVICE_NAME_BYTES).rstrip(".")
    return cleaned or "device"


def _component_valid(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return component_problem(name) is None and unicodedata.is_normalized("NFC", name)


def _fit_name(stem: str, middle: str, ext: str, budget: int, strict: bool) -> str | None:
    """`stem + middle + ext` as one component of at most `budget` bytes, shortening the stem
    (then, if the extension alone is too long, treating it as part of the stem).

    With `strict` the result must also pass the component rules of `validate_remote_path`.
    Returns None if no such name exists.
    """
    for stem_, ext_ in ((stem, ext), (stem + ext, "")) if ext else ((stem, ""),):
        room = budget - len(middle.encode("utf-8")) - len(ext_.encode("utf-8"))
        if room < 0:
            continue
        short = truncate_utf8(stem_, room)
        name = short + middle + ext_
        if not strict:
            return name
        # Cutting a stem can leave a Windows device name in front ("CONSOLE" -> "CON"),
        # or split a character from its combining marks (no longer NFC).
        while short and not _component_valid(short + middle + ext_):
            short = short[:-1]
        name = short + middle + ext_
        if _component_valid(name) and len(name.encode("utf-8")) <= budget:
            return name
    return None


def _name_budget(directory: str) -> int:
    dir_bytes = len(directory.encode("utf-8")) + 1 if directory else 0
    return min(MAX_COMPONENT_BYTES, MAX_PATH_BYTES - dir_bytes)


def conflict_name(path: str, mtime_ns: int, device_name: str) -> str:
    """The conflict-copy path for the version of `path` with `mtime_ns` made on `device_name`.

    `<stem>.sync-conflict-<YYYYMMDD>-<HHMMSS>-<device><.ext>` in the same directory, the time
    being `mtime_ns` in UTC. If `path` passes `validate_remote_path`, so does the result: the
    device name is sanitised and the stem (or, if needed, the device name) shortened to keep
    the component within 255 bytes and the path within 4096.
    Raises PathRefused only if the directory part alone leaves no room for a conflict name.
    """
    directory, _, name = path.rpartition("/")
    stem, ext = _split_ext(name)
    stamp = utc_stamp(utc_datetime_ns(mtime_ns))
    device = sanitize_device_name(device_name)
    budget = _name_budget(directory)
    strict = _component_valid(name)
    while True:
        fitted = _fit_name(stem, f"{CONFLICT_MARKER}{stamp}-{device}", ext, budget, strict)
        if fitted is not None:
            return f"{directory}/{fitted}" if directory else fitted
        if len(device) <= 1:
            raise PathRefused(
                "path refused: too long to give a conflict copy beside it", path=path
            )
        device = sanitize_device_name(device[: len(device) // 2])


def is_conflict_name(path: str) -> bool:
    """True if the last component of `path` is a conflict-copy name. Raises nothing."""
    return _CONFLICT_RE.search(path.rpartition("/")[2]) is not None


def copy_is_from(copy_path: str, device_name: str) -> bool:
    """Whether the conflict copy `copy_path` keeps the version made on `device_name` (its name
    says so: `...sync-conflict-<stamp>-<device>[-N][.ext]`). Raises nothing."""
    name = copy_path.rpartition("/")[2]
    device = re.escape(sanitize_device_name(device_name))
    return re.search(re.escape(CONFLICT_MARKER) + r"\d{8}-\d{6}-" + device + r"(?:-\d+)?(?:\.[^.]*)?$",
                     name) is not None


def unique_path(candidate: str, taken: Callable[[str], bool]) -> str:
    """`candidate` if `taken(candidate)` is false, else the first free `<stem>-N<.ext>`, N = 1, 2...

    The stem is shortened if `-N` would push the name over 255 bytes (or the path over 4096),
    and a name that passes `validate_remote_path` keeps passing it. Raises PathRefused if no
    free name is found (only if `taken` says everything is taken, or there is no room).
    """
    if not taken(candidate):
        return candidate
    directory, _, name = candidate.rpartition("/")
    stem, ext = _split_ext(name)
    budget = _name_budget(directory)
    # Keep a valid name valid; a local-only name (say "a:b" on Linux) just gets its number.
    strict = _component_valid(name)
    for n in range(1, _UNIQUE_ATTEMPTS + 1):
        fitted = _fit_name(stem, f"-{n}", ext, budget, strict)
        if fitted is None:
            break
        option = f"{directory}/{fitted}" if directory else fitted
        if not taken(option):
            return option
    raise PathRefused("path refused: no free name found beside it", path=candidate)
