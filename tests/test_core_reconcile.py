"""shoal.core.reconcile: concurrent versions of one path are resolved the same way everywhere."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.core.conflicts import conflict_name, is_conflict_name
from shoal.core.reconcile import (
    ADOPT_HEAD,
    PUSH_OVER_HEAD,
    SAME,
    Resolution,
    Version,
    final_files,
    newer,
    resolve_concurrent,
    trashed_versions,
)

PATH = "docs/plan.txt"


def v(sha="aa", *, deleted=False, mtime=1_000, device="dev-a", name="laptop", path=PATH):
    return Version(path=path, sha256=sha, deleted=deleted, mtime_ns=mtime, device_id=device, device_name=name)


# -- newer ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "a,b,winner",
    [
        (v(mtime=2), v(mtime=1, device="zzz", sha="zz"), "a"),  # mtime first
        (v(mtime=1, device="b"), v(mtime=1, device="a"), "a"),  # then device id
        (v(mtime=1, device="a", sha="bb"), v(mtime=1, device="a", sha="aa"), "a"),  # then sha256
    ],
)
def test_newer_order(a, b, winner):
    expected = a if winner == "a" else b
    assert newer(a, b) is expected
    assert newer(b, a) is expected


# -- resolve_concurrent: one row per rule -----------------------------------------------------

LOCAL_NEW = v("11", mtime=2_000, device="dev-a", name="laptop")
HEAD_OLD = v("22", mtime=1_000, device="dev-b", name="phone")
LOCAL_OLD = v("11", mtime=1_000, device="dev-a", name="laptop")
HEAD_NEW = v("22", mtime=2_000, device="dev-b", name="phone")


DELETED_LATE = v("11", deleted=True, mtime=9_000)
EDITED_EARLY = v("22", mtime=1, device="dev-b")
TIE_LOCAL = v("11", mtime=5, device="dev-z")
TIE_HEAD = v("22", mtime=5, device="dev-b", name="phone")

RESOLVE_CASES = [
    # id, local, head, policy, expected
    ("same-content", v("11"), v("11", device="dev-b", mtime=5), "keep-both", Resolution(SAME)),
    ("same-content-nw", v("11"), v("11", device="dev-b"), "newest-wins", Resolution(SAME)),
    ("both-deleted", v("1", deleted=True), v("2", deleted=True), "keep-both", Resolution(SAME)),
    ("edit-beats-local-delete", DELETED_LATE, EDITED_EARLY, "keep-both", Resolution(ADOPT_HEAD)),
    ("edit-beats-local-delete-nw", DELETED_LATE, EDITED_EARLY, "newest-wins", Resolution(ADOPT_HEAD)),
    ("edit-beats-head-delete", EDITED_EARLY, DELETED_LATE, "keep-both", Resolution(PUSH_OVER_HEAD)),
    ("edit-beats-head-delete-nw", EDITED_EARLY, DELETED_LATE, "newest-wins", Resolution(PUSH_OVER_HEAD)),
    (
        "keep-both-local-newer",
        LOCAL_NEW,
        HEAD_OLD,
        "keep-both",
        Resolution(PUSH_OVER_HEAD, head_copy_to=conflict_name(PATH, 1_000, "phone")),
    ),
    (
        "keep-both-head-newer",
        LOCAL_OLD,
        HEAD_NEW,
        "keep-both",
        Resolution(ADOPT_HEAD, local_copy_to=conflict_name(PATH, 1_000, "laptop")),
    ),
    ("newest-wins-local-newer", LOCAL_NEW, HEAD_OLD, "newest-wins", Resolution(PUSH_OVER_HEAD)),
    ("newest-wins-head-newer", LOCAL_OLD, HEAD_NEW, "newest-wins", Resolution(ADOPT_HEAD, trash_local=True)),
    (
        "mtime-tie-larger-device-id-wins",
        TIE_LOCAL,
        TIE_HEAD,
        "keep-both",
        Resolution(PUSH_OVER_HEAD, head_copy_to=conflict_name(PATH, 5, "phone")),
    ),
]


@pytest.mark.parametrize("case,local,head,policy,expected", RESOLVE_CASES, ids=[c[0] for c in RESOLVE_CASES])
def test_resolve_concurrent(case, local, head, policy, expected):
    assert resolve_concurrent(local, head, policy) == expected


def test_keep_both_copy_is_a_conflict_name_in_the_same_directory():
    resolution = resolve_concurrent(LOCAL_OLD, HEAD_NEW, "keep-both")
    assert is_conflict_name(resolution.local_copy_to)
    assert resolution.local_copy_to.startswith("docs/plan.sync-conflict-")
    assert resolution.local_copy_to.endswith("-laptop.txt")


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="policy"):
        resolve_concurrent(LOCAL_NEW, HEAD_OLD, "last-writer")


def test_different_paths_are_refused():
    with pytest.raises(ValueError, match="different paths"):
        resolve_concurrent(v(path="a"), v(path="b"), "keep-both")


# -- final_files / trashed_versions ----------------------------------------------------------


def test_final_files_keep_both():
    resolution = resolve_concurrent(LOCAL_OLD, HEAD_NEW, "keep-both")
    assert final_files(LOCAL_OLD, HEAD_NEW, resolution) == {
        PATH: "22",
        conflict_name(PATH, 1_000, "laptop"): "11",
    }
    assert trashed_versions(LOCAL_OLD, HEAD_NEW, resolution) == []


def test_final_files_newest_wins_trashes_the_loser():
    resolution = resolve_concurrent(LOCAL_OLD, HEAD_NEW, "newest-wins")
    assert final_files(LOCAL_OLD, HEAD_NEW, resolution) == {PATH: "22"}
    assert trashed_versions(LOCAL_OLD, HEAD_NEW, resolution) == [LOCAL_OLD]
    resolution = resolve_concurrent(LOCAL_NEW, HEAD_OLD, "newest-wins")
    assert final_files(LOCAL_NEW, HEAD_OLD, resolution) == {PATH: "11"}
    assert trashed_versions(LOCAL_NEW, HEAD_OLD, resolution) == [HEAD_OLD]


def test_final_files_both_deleted_is_empty():
    a, b = v(deleted=True), v(deleted=True, device="dev-b")
    assert final_files(a, b, resolve_concurrent(a, b, "keep-both")) == {}


def test_final_files_rejects_unknown_action():
    with pytest.raises(ValueError):
        final_files(LOCAL_NEW, HEAD_OLD, Resolution("merge"))


# -- properties ---------------------------------------------------------------------------

versions = st.builds(
    Version,
    path=st.just(PATH),
    sha256=st.sampled_from(["aa", "bb", "cc"]),
    deleted=st.booleans(),
    mtime_ns=st.integers(0, 3),
    device_id=st.sampled_from(["dev-a", "dev-b", "dev-c"]),
    device_name=st.sampled_from(["laptop", "phone", "phone", "bad/name: x"]),
)
policies = st.sampled_from(["keep-both", "newest-wins"])


@given(versions, versions, policies)
def test_outcome_does_not_depend_on_who_pushed_second(a, b, policy):
    a_first = final_files(b, a, resolve_concurrent(b, a, policy))  # b pushed second: a is head
    b_first = final_files(a, b, resolve_concurrent(a, b, policy))
    assert a_first == b_first
    trashed_a = {x.sha256 for x in trashed_versions(b, a, resolve_concurrent(b, a, policy))}
    trashed_b = {x.sha256 for x in trashed_versions(a, b, resolve_concurrent(a, b, policy))}
    assert trashed_a == trashed_b


@given(versions, versions)
def test_keep_both_loses_no_version(local, head):
    resolution = resolve_concurrent(local, head, "keep-both")
    live = set(final_files(local, head, resolution).values())
    for version in (local, head):
        if not version.deleted:
            assert version.sha256 in live
    assert trashed_versions(local, head, resolution) == []


@given(versions, versions)
def test_newest_wins_keeps_the_winner_live_and_the_loser_in_the_trash(local, head):
    resolution = resolve_concurrent(local, head, "newest-wins")
    files = final_files(local, head, resolution)
    trashed = {x.sha256 for x in trashed_versions(local, head, resolution)}
    for version in (local, head):
        if not version.deleted:
            assert version.sha256 in set(files.values()) | trashed
    edits = [x for x in (local, head) if not x.deleted]
    if edits:
        winner = edits[0] if len(edits) == 1 else newer(local, head)
        assert files == {PATH: winner.sha256}
    else:
        assert files == {}


@given(versions, versions, policies)
def test_an_edit_always_beats_a_delete(local, head, policy):
    if local.deleted == head.deleted:
        return
    edit = head if local.deleted else local
    resolution = resolve_concurrent(local, head, policy)
    assert final_files(local, head, resolution) == {PATH: edit.sha256}
    assert resolution.local_copy_to is None and resolution.head_copy_to is None
