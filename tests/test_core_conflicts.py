"""shoal.core.conflicts: conflict-copy names and free alternatives to taken paths."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shoal.core.conflicts import conflict_name, is_conflict_name, sanitize_device_name, unique_path
from shoal.core.paths import validate_remote_path
from shoal.errors import PathRefused

T = 1_700_000_000_123_456_789  # 2023-11-14 22:13:20.123 UTC
STAMP = "20231114-221320"


@pytest.mark.parametrize(
    "path,device,expected",
    [
        ("report.pdf", "laptop", f"report.sync-conflict-{STAMP}-laptop.pdf"),
        ("a/b/archive.tar.gz", "laptop", f"a/b/archive.tar.sync-conflict-{STAMP}-laptop.gz"),
        (".bashrc", "laptop", f".bashrc.sync-conflict-{STAMP}-laptop"),
        ("dir/.config.json", "laptop", f"dir/.config.sync-conflict-{STAMP}-laptop.json"),
        ("Makefile", "laptop", f"Makefile.sync-conflict-{STAMP}-laptop"),
        ("x.d/Makefile", "laptop", f"x.d/Makefile.sync-conflict-{STAMP}-laptop"),
    ],
)
def test_conflict_name_format(path, device, expected):
    assert conflict_name(path, T, device) == expected


def test_conflict_name_uses_utc_of_mtime():
    assert conflict_name("a.txt", 0, "d") == "a.sync-conflict-19700101-000000-d.txt"
    assert conflict_name("a.txt", -1, "d") == "a.sync-conflict-19691231-235959-d.txt"


def test_conflict_name_with_absurd_mtime_is_still_a_conflict_name():
    for mtime in (-(10**30), 10**30):
        name = conflict_name("a.txt", mtime, "d")
        assert is_conflict_name(name)
        validate_remote_path(name)


@pytest.mark.parametrize(
    "device,expected",
    [
        ("pixel 7", "pixel-7"),
        ("a/b\\c:d*e?f\"g<h>i|j", "a-b-c-d-e-f-g-h-i-j"),
        ("tab\there\x7f", "tab-here-"),
        ("trailing...", "trailing"),
        ("...", "device"),
        ("", "device"),
        ("bad\udc80", "bad-"),
        ("cafe\u0301", "caf\u00e9"),
    ],
)
def test_sanitize_device_name(device, expected):
    assert sanitize_device_name(device) == expected


def test_device_name_is_capped():
    name = conflict_name("a.txt", T, "x" * 500)
    assert len(name.encode()) < 120
    assert name.endswith(".txt")


def test_unsafe_device_name_never_leaks_into_the_path():
    name = conflict_name("dir/a.txt", T, "../../etc/passwd")
    assert name.startswith("dir/a.sync-conflict-")
    assert name.count("/") == 1
    validate_remote_path(name)


def test_long_name_is_shortened_to_255_bytes():
    path = "dir/" + "é" * 120 + ".txt"  # 244-byte component
    name = conflict_name(path, T, "laptop")
    last = name.rpartition("/")[2]
    assert len(last.encode()) <= 255
    assert last.endswith(f".sync-conflict-{STAMP}-laptop.txt")
    validate_remote_path(name)


def test_shortening_never_leaves_a_windows_device_name():
    # A directory this long leaves room for exactly 3 bytes of stem beside the conflict marker,
    # so the naive cut of "CONSOLE" would be "CON": a Windows device name.
    directory = "/".join(["d" * 200] * 21)[:4056]
    path = directory + "/CONSOLE.txt"
    validate_remote_path(path)
    name = conflict_name(path, T, "d")
    last = name.rpartition("/")[2]
    assert last == f"CO.sync-conflict-{STAMP}-d.txt"
    validate_remote_path(name)


def test_huge_extension_is_folded_into_the_stem():
    path = "a." + "e" * 250
    name = conflict_name(path, T, "dev")
    validate_remote_path(name)
    assert is_conflict_name(name)


def test_path_near_4096_bytes_still_gets_a_valid_conflict_name():
    directory = "/".join(["d" * 200] * 19)  # 3819 bytes
    path = directory + "/" + "f" * 200 + ".txt"
    assert validate_remote_path(path)
    name = conflict_name(path, T, "laptop")
    assert len(name.encode()) <= 4096
    assert name.startswith(directory + "/")
    validate_remote_path(name)


def test_no_room_at_all_is_refused():
    directory = "/".join(["d" * 200] * 21)[:4090]
    path = directory + "/abc"
    assert validate_remote_path(path)
    with pytest.raises(PathRefused, match="conflict copy"):
        conflict_name(path, T, "laptop")


@pytest.mark.parametrize(
    "path,expected",
    [
        (f"a.sync-conflict-{STAMP}-dev.txt", True),
        (f"dir/.bashrc.sync-conflict-{STAMP}-dev", True),
        ("a.sync-conflict-2023-dev.txt", False),
        ("a.txt", False),
        (f"a.sync-conflict-{STAMP}-dev/inner.txt", False),  # only the last component counts
        (f"sync-conflict-{STAMP}-dev.txt", False),
    ],
)
def test_is_conflict_name(path, expected):
    assert is_conflict_name(path) is expected


@pytest.mark.parametrize(
    "candidate,taken,expected",
    [
        ("a/b.txt", set(), "a/b.txt"),
        ("a/b.txt", {"a/b.txt"}, "a/b-1.txt"),
        ("a/b.txt", {"a/b.txt", "a/b-1.txt", "a/b-2.txt"}, "a/b-3.txt"),
        ("Makefile", {"Makefile"}, "Makefile-1"),
        (".bashrc", {".bashrc"}, ".bashrc-1"),
        ("x.tar.gz", {"x.tar.gz"}, "x.tar-1.gz"),
        ("a:b", {"a:b"}, "a:b-1"),  # a local-only name still gets a number
    ],
)
def test_unique_path(candidate, taken, expected):
    assert unique_path(candidate, taken.__contains__) == expected


def test_unique_path_keeps_within_255_bytes():
    candidate = "d/" + "x" * 251 + ".txt"
    result = unique_path(candidate, lambda p: p == candidate)
    assert result.endswith("-1.txt")
    assert len(result.rpartition("/")[2].encode()) == 255
    validate_remote_path(result)


def test_unique_path_gives_up_when_everything_is_taken():
    import shoal.core.conflicts as conflicts

    original = conflicts._UNIQUE_ATTEMPTS
    conflicts._UNIQUE_ATTEMPTS = 50
    try:
        with pytest.raises(PathRefused):
            unique_path("a.txt", lambda p: True)
    finally:
        conflicts._UNIQUE_ATTEMPTS = original


# -- properties ---------------------------------------------------------------------------

_component = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"),
    min_size=1,
    max_size=40,
)
_long_component = st.builds(lambda c, n: (c * n)[:250], _component, st.integers(1, 200))
valid_paths = (
    st.lists(st.one_of(_component, _long_component), min_size=1, max_size=5)
    .map("/".join)
    .filter(lambda p: _accepted(p))
)


def _accepted(path: str) -> bool:
    try:
        validate_remote_path(path)
    except PathRefused:
        return False
    return True


@settings(max_examples=300)
@given(valid_paths, st.integers(-(2**63), 2**63), st.text(max_size=100))
def test_conflict_name_of_an_accepted_path_is_accepted(path, mtime_ns, device):
    name = conflict_name(path, mtime_ns, device)
    assert validate_remote_path(name) == name
    assert is_conflict_name(name)
    assert name != path
    assert name.rpartition("/")[0] == path.rpartition("/")[0]


@settings(max_examples=200)
@given(valid_paths, st.integers(0, 5))
def test_unique_path_of_an_accepted_path_is_accepted_and_free(path, n_taken):
    taken = {path}
    for _ in range(n_taken):
        taken.add(unique_path(path, taken.__contains__))
    result = unique_path(path, taken.__contains__)
    assert result not in taken
    assert validate_remote_path(result) == result
    assume(n_taken > 0)
    assert result.rpartition("/")[0] == path.rpartition("/")[0]


@pytest.mark.parametrize("copy, device, expected", [
    ("doc.sync-conflict-20260101-120000-alpha.txt", "alpha", True),
    ("doc.sync-conflict-20260101-120000-alpha.txt", "alph", False),
    ("doc.sync-conflict-20260101-120000-alpha-2.txt", "alpha", True),
    ("d/x.tar.sync-conflict-20260101-120000-my phone.gz", "my phone", False),  # spaces are sanitised
    ("d/x.tar.sync-conflict-20260101-120000-my-phone.gz", "my phone", True),
    ("Makefile.sync-conflict-20260101-120000-beta", "beta", True),
    ("doc.txt", "alpha", False),
])
def test_copy_is_from(copy, device, expected):
    from shoal.core.conflicts import copy_is_from

    assert copy_is_from(copy, device) is expected
    if expected:
        assert copy_is_from(copy, device + "x") is False
