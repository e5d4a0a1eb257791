"""shoal.core.guards: the mass-delete rule shared by the scanner and the pull (no I/O)."""

from __future__ import annotations

import pytest

from shoal.core.guards import MASS_DELETE_MIN, is_mass_delete, mass_delete_reason


@pytest.mark.parametrize("removed,live,trips", [
    (0, 0, False),
    (5, 20, False),
    (10, 10, False),   # more than 10 is needed: 10 of 10 is not a mass delete
    (10, 20, False),
    (11, 11, True),    # every file, and more than 10
    (11, 20, True),
    (11, 21, True),    # 11 * 2 = 22 > 21
    (11, 22, False),   # exactly half is not more than half
    (12, 24, False),
    (16, 30, True),
    (30, 30, True),
    (15, 30, False),
    (1000, 100_000, False),
    (50_001, 100_000, True),
    (12, 5, True),     # more removed than the index holds (a stale count): still a mass delete
])
def test_mass_delete_threshold_table(removed, live, trips):
    assert is_mass_delete(removed, live) is trips


def test_minimum_is_ten():
    assert MASS_DELETE_MIN == 10


def test_reason_names_the_counts_and_the_way_out():
    reason = mass_delete_reason(30, 30, "deleted or emptied by changes from other devices (rogue)")
    assert reason.startswith("mass-delete: 30 of 30 files would be deleted or emptied")
    assert "rogue" in reason and "shoal sync --now --allow-mass-delete" in reason


@pytest.mark.parametrize("seen,exists,marker,action,reason_part", [
    (False, False, None, "create", None),           # a new folder: made, with its marker
    (False, True, None, "create", None),            # an existing directory, first use: marker made
    (True, False, None, "pause", "folder missing"),  # an unmounted card is not "all deleted"
    (True, True, None, "pause", "marker missing"),  # a marker deleted by hand
    (False, True, "docs\n", "ok", None),
    (True, True, "docs", "ok", None),
    (True, True, "photos\n", "pause", "names folder 'photos'"),  # another folder mounted here
    (False, True, "photos", "pause", "names folder 'photos'"),
])
def test_marker_decision(seen, exists, marker, action, reason_part):
    from shoal.core.guards import marker_decision

    got, reason = marker_decision("docs", seen_before=seen, folder_exists=exists, marker=marker,
                                  root="/r", marker_path="/r/.shoal/folder-id")
    assert got == action
    assert (reason is None) == (reason_part is None)
    if reason_part:
        assert reason_part in reason and "paused" in reason
