"""shoal.core.conditions: run conditions (`sync.when`) and the user's pause, pure: the reading
and the clock are passed in."""

from __future__ import annotations

from datetime import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.core.conditions import (
    Pause,
    PauseState,
    Reading,
    RunConditions,
    evaluate,
    format_hours,
    in_window,
    needed_readings,
    parse_hours,
)

# --- hours ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text,window", [
    ("22:00-07:00", (22 * 60, 7 * 60)),
    ("00:00-24:00", (0, 24 * 60)),
    ("9:30-17:45", (9 * 60 + 30, 17 * 60 + 45)),
    (" 08:00 - 09:00 ", (8 * 60, 9 * 60)),
    ("23:59-00:00", (23 * 60 + 59, 0)),
])
def test_parse_hours(text, window):
    assert parse_hours(text) == window


@pytest.mark.parametrize("text", [
    "", "22:00", "22-07", "25:00-07:00", "22:60-07:00", "24:00-07:00", "07:00-07:00", "7h-8h",
    "22:00-07:00-08:00", "-1:00-02:00", "22:00–07:00",  # an en dash is not a dash
])
def test_parse_hours_refuses(text):
    with pytest.raises(ValueError, match="HH:MM-HH:MM"):
        parse_hours(text)


@pytest.mark.parametrize("window,at,inside", [
    ((22 * 60, 7 * 60), time(23, 0), True),
    ((22 * 60, 7 * 60), time(0, 0), True),
    ((22 * 60, 7 * 60), time(6, 59), True),
    ((22 * 60, 7 * 60), time(7, 0), False),  # the end is not in the window
    ((22 * 60, 7 * 60), time(12, 0), False),
    ((22 * 60, 7 * 60), time(21, 59, 59), False),
    ((22 * 60, 7 * 60), time(22, 0), True),
    ((8 * 60, 17 * 60), time(8, 0), True),
    ((8 * 60, 17 * 60), time(16, 59, 59), True),
    ((8 * 60, 17 * 60), time(17, 0), False),
    ((0, 24 * 60), time(23, 59, 59), True),
    ((0, 24 * 60), time(0, 0), True),
])
def test_in_window(window, at, inside):
    assert in_window(window, at) is inside


_minute = st.integers(0, 24 * 60 - 1)


@given(_minute, _minute, _minute)
def test_a_wrapping_window_is_the_complement_of_the_day_window(start, end, at):
    """`22:00-07:00` holds exactly when `07:00-22:00` does not, for every pair of times."""
    if start == end:
        return
    t = time(at // 60, at % 60)
    assert in_window((start, end), t) is not in_window((end, start), t)
    assert parse_hours(format_hours((start, end))) == (start, end)


@given(_minute, _minute)
def test_a_window_contains_its_start_and_not_its_end(start, end):
    if start == end:
        return
    assert in_window((start, end), time(start // 60, start % 60))
    assert not in_window((start, end), time(end // 60, end % 60))


# --- evaluation -----------------------------------------------------------------------------

NOON = time(12, 0)
NIGHT = RunConditions(hours=(22 * 60, 7 * 60))


@pytest.mark.parametrize("conds,reading,at,may,waiting,unreadable", [
    (RunConditions(), Reading(), NOON, True, (), ()),
    (RunConditions(wifi_only=True), Reading(wifi=True), NOON, True, (), ()),
    (RunConditions(wifi_only=True), Reading(wifi=False), NOON, False, ("Wi-Fi",), ()),
    (RunConditions(wifi_only=True), Reading(wifi=None), NOON, True, (), ("Wi-Fi",)),  # cannot read: no block
    (RunConditions(charging_only=True), Reading(charging=False), NOON, False, ("charging",), ()),
    (RunConditions(charging_only=True), Reading(charging=True), NOON, True, (), ()),
    (RunConditions(charging_only=True), Reading(), NOON, True, (), ("charging",)),
    (RunConditions(min_battery=30), Reading(battery=29), NOON, False, ("battery at 30% (now 29%)",), ()),
    (RunConditions(min_battery=30), Reading(battery=30), NOON, True, (), ()),
    (RunConditions(min_battery=30), Reading(battery=None), NOON, True, (), ("battery level",)),
    # on the charger, a low battery does not hold sync back: it is filling up
    (RunConditions(min_battery=30), Reading(battery=10, charging=True), NOON, True, (), ()),
    (NIGHT, Reading(), NOON, False, ("22:00-07:00",), ()),
    (NIGHT, Reading(), time(23, 30), True, (), ()),
    (RunConditions(hours=(0, 24 * 60)), Reading(), NOON, True, (), ()),
    (RunConditions(wifi_only=True, charging_only=True, min_battery=50, hours=(22 * 60, 7 * 60)),
     Reading(wifi=False, charging=False, battery=20), NOON, False,
     ("Wi-Fi", "charging", "battery at 50% (now 20%)", "22:00-07:00"), ()),
    (RunConditions(wifi_only=True, charging_only=True), Reading(wifi=False), NOON, False, ("Wi-Fi",), ("charging",)),
])
def test_evaluate(conds, reading, at, may, waiting, unreadable):
    verdict = evaluate(conds, reading, at)
    assert verdict.may_sync is may
    assert verdict.waiting_for == waiting
    assert verdict.unreadable == unreadable


def test_verdict_text():
    assert evaluate(RunConditions(wifi_only=True), Reading(wifi=False), NOON).text() == "waiting for Wi-Fi"
    both = evaluate(RunConditions(wifi_only=True, charging_only=True), Reading(wifi=False, charging=False), NOON)
    assert both.text() == "waiting for Wi-Fi and charging"
    assert evaluate(NIGHT, Reading(), NOON).text() == "waiting for the hours 22:00-07:00"
    assert evaluate(RunConditions(), Reading(), NOON).text() == ""


@given(st.booleans(), st.booleans(), st.integers(0, 100), st.none() | st.booleans(), st.none() | st.booleans(),
       st.none() | st.integers(0, 100))
def test_unreadable_never_blocks(wifi_only, charging_only, min_battery, wifi, charging, battery):
    """Whatever cannot be read (None) never holds sync back; what can be read and is set does."""
    conds = RunConditions(wifi_only=wifi_only, charging_only=charging_only, min_battery=min_battery)
    unknown = evaluate(conds, Reading(), NOON)
    assert unknown.may_sync
    verdict = evaluate(conds, Reading(wifi, charging, battery), NOON)
    blocked = ((wifi_only and wifi is False) or (charging_only and charging is False)
               or (min_battery > 0 and battery is not None and battery < min_battery and charging is not True))
    assert verdict.may_sync is not blocked


@pytest.mark.parametrize("conds,needed", [
    (RunConditions(), frozenset()),
    (RunConditions(hours=(0, 60)), frozenset()),
    (RunConditions(wifi_only=True), {"wifi"}),
    (RunConditions(charging_only=True), {"charging"}),
    (RunConditions(min_battery=1), {"battery", "charging"}),
])
def test_needed_readings(conds, needed):
    assert needed_readings(conds) == needed


def test_run_conditions_any():
    assert not RunConditions().any
    assert not RunConditions(hours=(0, 24 * 60)).any  # all day is no condition
    assert RunConditions(hours=(0, 60)).any and RunConditions(min_battery=5).any


# --- the user's pause -----------------------------------------------------------------------


def test_pause_state_round_trip_and_expiry():
    s = PauseState().paused(None, until=None, now=100.0).paused("docs", until=200.0, now=100.0)
    assert PauseState.from_json(s.to_json()) == s
    assert s.holding("docs", 150.0) == (Pause(100.0, None), True)  # the whole device holds longer
    assert s.holding("photos", 150.0) == (Pause(100.0, None), True)
    only_folder = s.resumed(None, keep_folders=True)
    assert only_folder.holding("docs", 150.0) == (Pause(100.0, 200.0), False)
    assert only_folder.holding("docs", 200.0) is None  # an expired pause ends by itself
    assert only_folder.holding("photos", 150.0) is None
    assert s.resumed(None).holding("docs", 150.0) is None  # resume without a folder: everything
    assert s.resumed("docs").holding("docs", 150.0) == (Pause(100.0, None), True)
    assert s.pruned(250.0) == PauseState(device=Pause(100.0, None))


@pytest.mark.parametrize("device,folder,expect", [
    (Pause(0, 50), Pause(0, 80), (Pause(0, 80), False)),
    (Pause(0, 90), Pause(0, 80), (Pause(0, 90), True)),
    (Pause(0, None), Pause(0, 80), (Pause(0, None), True)),
    (Pause(0, 80), Pause(0, None), (Pause(0, None), False)),
    (Pause(0, 5), Pause(0, 80), (Pause(0, 80), False)),  # the device's has ended
    (None, None, None),
])
def test_holding_takes_the_longer_pause(device, folder, expect):
    s = PauseState(device=device, folders={"docs": folder} if folder else {})
    assert s.holding("docs", 10.0) == expect


@pytest.mark.parametrize("data", [None, [], "x", {"device": "x"}, {"folders": {"a": {"until": "soon"}}},
                                  {"folders": []}, {"device": {"since": 1, "until": -1.5e400}}])
def test_pause_state_from_bad_json_is_tolerant(data):
    """A damaged pause file never stops the daemon: what cannot be read is no pause."""
    assert isinstance(PauseState.from_json(data), PauseState)
