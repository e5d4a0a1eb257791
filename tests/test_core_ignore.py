"""shoal.core.ignore: gitignore patterns plus shoal's own directory."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.core.ignore import IgnoreRules

FOLDER_PATTERNS = [
    "*.tmp",
    ".thumbnails/",
    "!keep.tmp",
    "/build",
    "logs/*",
    "!logs/keep.log",
    "# comment",
    "",
]

# (path, is_dir, ignored, why)
CASES = [
    ("photo.jpg", False, False, "no pattern matches"),
    ("a.tmp", False, True, "glob"),
    ("deep/er/a.tmp", False, True, "glob without slash matches at any depth"),
    ("keep.tmp", False, False, "negation re-includes"),
    ("sub/keep.tmp", False, False, "negation re-includes at any depth"),
    (".thumbnails", True, True, "directory pattern matches the directory itself"),
    (".thumbnails", False, False, "directory pattern does not match a file of that name"),
    (".thumbnails/x.jpg", False, True, "directory pattern matches everything under it"),
    ("DCIM/.thumbnails/x.jpg", False, True, "directory pattern at any depth"),
    ("DCIM/.thumbnails/a/b/c", True, True, "nested directory under an ignored one"),
    ("build", True, True, "anchored pattern at the root"),
    ("build/out.o", False, True, "under an anchored directory"),
    ("src/build", True, False, "anchored pattern does not match deeper"),
    ("logs/x.log", False, True, "dir/* matches its contents"),
    ("logs/keep.log", False, False, "negation inside a non-excluded directory"),
    ("logs", True, False, "dir/* does not match the directory itself"),
    ("# comment", False, False, "comment lines are not patterns"),
]


@pytest.mark.parametrize("path,is_dir,ignored,why", CASES, ids=[c[3] for c in CASES])
def test_folder_patterns(path, is_dir, ignored, why):
    assert IgnoreRules(FOLDER_PATTERNS).is_ignored(path, is_dir=is_dir) is ignored, why


def test_negation_cannot_reinclude_below_an_excluded_directory():
    # git never descends into an excluded directory, so "!cache/keep" has no effect.
    rules = IgnoreRules(["cache/", "!cache/keep"])
    assert rules.is_ignored("cache/keep")
    assert rules.is_ignored("cache/other")
    assert not rules.is_ignored("keep")


@pytest.mark.parametrize(
    "path,is_dir",
    [
        (".shoal", True),
        (".shoal/folder-id", False),
        (".shoal/tmp", True),
        (".shoal/tmp/0123abcd.part", False),  # partial downloads live here
        (".shoal/trash/a.txt~20240101-000000", False),
        (".SHOAL/x", False),  # the same directory on a case-insensitive disk
        ("nested/.shoal/folder-id", False),  # a nested folder's state is never synced either
    ],
)
def test_shoal_directory_always_ignored(path, is_dir):
    assert IgnoreRules([]).is_ignored(path, is_dir=is_dir)
    assert IgnoreRules(["!.shoal", "!.shoal/**", "!*"]).is_ignored(path, is_dir=is_dir)


@pytest.mark.parametrize(
    "path",
    [
        "a.sync-conflict-20240101-000000-dev.txt",
        "report.docx~20240101-000000",
        ".shoalrc",
        "shoal/tmp/x",
        "x.part",
        "~$document.docx",
        ".DS_Store",
    ],
)
def test_nothing_else_is_ignored_by_default(path):
    assert not IgnoreRules([]).is_ignored(path)


def test_root_is_never_ignored():
    assert not IgnoreRules(["*"]).is_ignored("", is_dir=True)


def test_single_string_is_refused():
    with pytest.raises(TypeError):
        IgnoreRules("*.tmp")


def test_directory_verdict_cache_gives_same_answers():
    rules = IgnoreRules(["cache/"])
    first = [rules.is_ignored(f"cache/f{i}") for i in range(50)]
    again = [rules.is_ignored(f"cache/f{i}") for i in range(50)]
    assert first == again == [True] * 50
    assert not rules.is_ignored("cachex/f")


_name = st.text(alphabet="abcXYZ.-_", min_size=1, max_size=6).filter(lambda s: s not in (".", ".."))


@given(st.lists(_name, min_size=1, max_size=3), st.lists(_name, min_size=1, max_size=3))
def test_everything_under_an_ignored_directory_is_ignored(dir_parts, rest):
    directory = "/".join(dir_parts)
    rules = IgnoreRules([f"/{directory}/"])
    assert rules.is_ignored(directory, is_dir=True)
    assert rules.is_ignored(directory + "/" + "/".join(rest))
    assert rules.is_ignored(directory + "/" + "/".join(rest), is_dir=True)
