"""shoal.core.paths: normalising, refusing unsafe remote paths, trash names, plausibility."""

from __future__ import annotations

import posixpath
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.core.paths import (
    casefold_key,
    metadata_plausible,
    normalize_relpath,
    parent_dirs,
    trash_relpath,
    trash_stamp_epoch,
    validate_remote_path,
)
from shoal.errors import PathRefused

# One row per rule: (rule id, refused path, accepted twin, words the refusal must contain).
RULES = [
    ("empty", "", "a", "empty"),
    ("too-long", "a/" * 2048 + "b", "a/" * 2047 + "b", "4096 bytes"),
    ("absolute", "/etc/passwd", "etc/passwd", "absolute"),
    ("dotdot", "a/../b", "a/..b", "'..'"),
    ("dotdot-leading", "../b", "b", "'..'"),
    ("dotdot-trailing", "a/..", "a/.x", "'..'"),
    ("nul", "a\x00b", "ab", "NUL"),
    ("control", "a\x1fb", "a b", "control character"),
    ("control-newline", "a\nb", "a b", "control character"),
    ("del", "a\x7fb", "a~b", "control character"),
    ("backslash", "a\\b", "a/b", "backslash"),
    ("drive", "C:/x", "C/x", "drive letter"),
    ("drive-lower-relative", "c:foo", "cfoo", "drive letter"),
    ("drive-bare", "C:", "C", "drive letter"),
    ("empty-component", "a//b", "a/b", "empty component"),
    ("trailing-slash", "a/", "a", "empty component"),
    ("dot", "a/./b", "a/.b/b", "'.' component"),
    ("dot-alone", ".", ".a", "'.' component"),
    ("shoal", ".shoal/folder-id", "shoal/folder-id", "'.shoal'"),
    ("shoal-nested", "a/.shoal/x", "a/.shoals/x", "'.shoal'"),
    ("shoal-case", "a/.SHOAL", "a/.SHOALS", "'.shoal'"),
    ("reserved-con", "CON", "CONE", "reserved"),
    ("reserved-lower-ext", "dir/nul.txt", "dir/null.txt", "reserved"),
    ("reserved-com", "com1", "com10", "reserved"),
    ("reserved-lpt-ext", "x/Lpt9.tar.gz", "x/Lpt0.tar.gz", "reserved"),
    ("reserved-aux", "AUX", "AUXX", "reserved"),
    ("reserved-prn", "prn.md", "prn_.md", "reserved"),
    ("forbidden-lt", "a<b", "a(b", "Windows forbids"),
    ("forbidden-gt", "a>b", "a)b", "Windows forbids"),
    ("forbidden-colon", "a/b:c", "a/b-c", "Windows forbids"),
    ("forbidden-quote", 'a"b', "a'b", "Windows forbids"),
    ("forbidden-pipe", "a|b", "a!b", "Windows forbids"),
    ("forbidden-question", "a?b", "a_b", "Windows forbids"),
    ("forbidden-star", "a*b", "a+b", "Windows forbids"),
    ("trailing-dot", "a./b", "a.b/b", "dot or a space"),
    ("trailing-space", "a/b ", "a/ b", "dot or a space"),
    ("component-255", "d/" + "x" * 256, "d/" + "x" * 255, "255 bytes"),
    ("component-255-utf8", "é" * 128, "é" * 127, "255 bytes"),
    ("not-nfc", "cafe\u0301", "caf\u00e9", "NFC"),
    ("surrogate", "a\udc80b", "a\u00e9b", "UTF-8"),
]


@pytest.mark.parametrize("rule,refused,accepted,words", RULES, ids=[r[0] for r in RULES])
def test_validate_remote_path_rule(rule, refused, accepted, words):
    assert validate_remote_path(accepted) == accepted
    with pytest.raises(PathRefused) as info:
        validate_remote_path(refused)
    message = str(info.value)
    assert message.startswith("path refused: ")
    assert words in message


@pytest.mark.parametrize("value", [None, b"a/b", 3, ["a"], object()])
def test_validate_remote_path_refuses_non_strings(value):
    with pytest.raises(PathRefused, match="not a string"):
        validate_remote_path(value)


def test_refusal_carries_the_path():
    with pytest.raises(PathRefused) as info:
        validate_remote_path("a/../b")
    assert info.value.path == "a/../b"


def test_nfc_unicode_is_accepted():
    for path in ["Fotos/Ürlaub 2024/bild.jpg", "日本語/ファイル.txt", "emoji/🙂.png", ".bashrc"]:
        assert validate_remote_path(path) == path


@pytest.mark.parametrize(
    "raw,os_sep,expected",
    [
        ("a/b/c.txt", "/", "a/b/c.txt"),
        ("a\\b\\c.txt", "\\", "a/b/c.txt"),
        ("a\\b", "/", "a\\b"),  # on POSIX a backslash is part of the name
        ("cafe\u0301/x", "/", "caf\u00e9/x"),
        ("A\u030a\\b", "\\", "\u00c5/b"),
    ],
)
def test_normalize_relpath(raw, os_sep, expected):
    assert normalize_relpath(raw, os_sep=os_sep) == expected


def test_normalize_relpath_defaults_to_posix_separator():
    assert normalize_relpath("a\\b") == "a\\b"
    assert normalize_relpath("x/cafe\u0301") == "x/caf\u00e9"


@pytest.mark.parametrize(
    "a,b",
    [
        ("Readme.TXT", "readme.txt"),
        ("Straße/x", "STRASSE/x"),
        ("caf\u00e9", "CAFE\u0301"),
        ("\u00c5ngstr\u00f6m", "a\u030angstro\u0308m"),
    ],
)
def test_casefold_key_collides(a, b):
    assert casefold_key(a) == casefold_key(b)


def test_casefold_key_keeps_distinct_names_apart():
    assert casefold_key("a/b") != casefold_key("a/c")
    assert casefold_key("resume") != casefold_key("résumé")


@pytest.mark.parametrize(
    "path,expected",
    [("c.txt", []), ("a/c.txt", ["a"]), ("a/b/c.txt", ["a", "a/b"]), ("x/y/z/w", ["x", "x/y", "x/y/z"])],
)
def test_parent_dirs(path, expected):
    assert parent_dirs(path) == expected


@pytest.mark.parametrize(
    "path,now,expected",
    [
        ("a/b.txt", 1_700_000_000.9, "a/b.txt~20231114-221320"),
        ("top", 0.0, "top~19700101-000000"),
        ("old", -86_400.0, "old~19691231-000000"),
        ("far", 1e300, "far~99991231-235959"),
    ],
)
def test_trash_relpath(path, now, expected):
    assert trash_relpath(path, now) == expected


@pytest.mark.parametrize(
    "name,expected",
    [
        ("b.txt~20231114-221320", 1_700_000_000.0),
        ("top~19700101-000000", 0.0),
        ("old~19691231-000000", -86_400.0),
        ("a~b~20200101-000000", 1_577_836_800.0),  # the last `~` holds the stamp
        ("no-stamp.txt", None),
        ("short~2020010-000000", None),
        ("month-13~20201301-000000", None),
        ("year-0~00000101-000000", None),
        ("suffix~20200101-000000.txt", None),
        ("signs~+2020101-000000", None),
        ("", None),
    ],
)
def test_trash_stamp_epoch(name, expected):
    assert trash_stamp_epoch(name) == expected


@given(st.integers(min_value=-62_135_596_800, max_value=253_402_300_799), st.sampled_from([0.0, 0.25, 0.5]))
def test_trash_stamp_epoch_reads_what_trash_relpath_writes(seconds, fraction):
    name = trash_relpath("d/f.txt", seconds + fraction).rpartition("/")[2]
    assert trash_stamp_epoch(name) == float(seconds)


def test_trash_relpath_keeps_component_within_255_bytes():
    long_name = "d/" + "é" * 127  # 254 bytes
    result = trash_relpath(long_name, 0.0)
    assert result.startswith("d/é")
    assert result.endswith("~19700101-000000")
    assert len(result.rpartition("/")[2].encode()) <= 255
    validate_remote_path(result)


JAN_1980_NS = 315_532_800 * 10**9
NOW_NS = 1_700_000_000 * 10**9
DAY_NS = 86_400 * 10**9


@pytest.mark.parametrize(
    "size,mtime_ns,plausible",
    [
        (0, NOW_NS, True),
        (-1, NOW_NS, False),
        (10, JAN_1980_NS, True),
        (10, JAN_1980_NS - 1, False),
        (10, 0, False),
        (10, NOW_NS + DAY_NS, True),
        (10, NOW_NS + DAY_NS + 1, False),
    ],
)
def test_metadata_plausible(size, mtime_ns, plausible):
    assert metadata_plausible(size, mtime_ns, NOW_NS) is plausible


# -- properties ---------------------------------------------------------------------------

# Text biased towards the characters the rules are about.
_tricky = st.sampled_from(
    list("/\\.:*?\"<>| \x00\x01\x7f~-_aZé") + ["..", ".shoal", "CON", "nul.txt", "C:", "\u0301", "\udc80"]
)
tricky_paths = st.lists(st.one_of(_tricky, st.text(max_size=4)), max_size=12).map("".join)


@settings(max_examples=400)
@given(st.one_of(st.text(), tricky_paths))
def test_validate_raises_only_path_refused(path):
    try:
        assert validate_remote_path(path) == path
    except PathRefused:
        pass


_component = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/"), min_size=1, max_size=20
)


@settings(max_examples=400)
@given(st.one_of(st.lists(_component, min_size=1, max_size=6).map("/".join), tricky_paths))
def test_accepted_paths_stay_inside_the_root(path):
    try:
        validate_remote_path(path)
    except PathRefused:
        return
    root = "/srv/folder"
    joined = posixpath.normpath(posixpath.join(root, path))
    assert joined.startswith(root + "/")
    assert posixpath.relpath(joined, root) == path
    assert unicodedata.is_normalized("NFC", path)


@given(st.text())
def test_normalize_relpath_is_idempotent_and_nfc(path):
    once = normalize_relpath(path, os_sep="\\")
    assert "\\" not in once
    assert normalize_relpath(once, os_sep="\\") == once
    assert unicodedata.is_normalized("NFC", once)


# -- hashes from the hub -------------------------------------------------------------------

from shoal.core.paths import validate_sha256  # noqa: E402

_GOOD_SHA = "0123456789abcdef" * 4


@pytest.mark.parametrize("value,why", [
    ("../../x", "64 lowercase hex"),
    ("../" * 21 + "x", "64 lowercase hex"),   # 64 characters, not hex
    (_GOOD_SHA.upper(), "64 lowercase hex"),
    (_GOOD_SHA[:-1], "64 lowercase hex"),
    (_GOOD_SHA + "0", "64 lowercase hex"),
    (_GOOD_SHA[:-1] + "g", "64 lowercase hex"),
    (_GOOD_SHA[:-1] + "/", "64 lowercase hex"),
    (_GOOD_SHA + "\n", "64 lowercase hex"),   # `$` in a regex would let a trailing newline through
    ("", "64 lowercase hex"),
    (None, "not a string"),
    (b"0" * 64, "not a string"),
    ("０" * 64, "64 lowercase hex"),        # fullwidth digits are not ASCII hex
])
def test_validate_sha256_refuses(value, why):
    with pytest.raises(PathRefused) as info:
        validate_sha256(value)
    assert why in str(info.value)


def test_validate_sha256_names_what_it_checked():
    with pytest.raises(PathRefused) as info:
        validate_sha256("../x", what="block id")
    assert "block id" in str(info.value) and "../x" in str(info.value)


@pytest.mark.parametrize("value", [_GOOD_SHA, "0" * 64, "f" * 64,
                                   "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"])
def test_validate_sha256_accepts(value):
    assert validate_sha256(value) == value


@given(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64))
def test_validate_sha256_accepts_any_lowercase_hex(value):
    assert validate_sha256(value) == value
