"""core.durations: the duration syntax of the config file and its inverse."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.core.durations import DURATION_HINT, WHEN_HINT, format_duration, parse_duration, parse_when


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("0.25h", 900.0),
        (".5s", 0.5),
        ("0s", 0.0),
        ("0ms", 0.0),
        ("7ms", 0.007),
        ("30", 30.0),  # a bare number is seconds
        ("2.5", 2.5),
        ("  10s\n", 10.0),
        (30, 30.0),  # YAML hands numbers over as int or float
        (1.5, 1.5),
        (0, 0.0),
    ],
)
def test_parse_accepts(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "s",
        "ms",
        "-5s",
        "-1",
        "+5s",
        "5 s",
        "5S",
        "5M",
        "5w",
        "5D",
        "5min",
        "1h30m",
        "1e3s",
        "1:30",
        "nan",
        "inf",
        "5s5",
        "0x10",
        "five seconds",
        -1,
        -0.5,
        float("nan"),
        float("inf"),
        10**400,
        True,
        False,
        None,
        [5],
    ],
)
def test_parse_refuses_with_the_hint(text):
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert str(caught.value).startswith(DURATION_HINT)
    assert DURATION_HINT == "must be a duration such as 500ms, 10s, 5m or 1h"


def test_refusal_names_the_value_and_stays_short():
    with pytest.raises(ValueError, match=r"\(got '5 minutes'\)$"):
        parse_duration("5 minutes")
    with pytest.raises(ValueError) as caught:
        parse_duration("x" * 1000)
    assert len(str(caught.value)) < 120


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.5, "500ms"),
        (1, "1s"),
        (1.5, "1500ms"),
        (10, "10s"),
        (90, "90s"),
        (300, "5m"),
        (300.0, "5m"),
        (3600, "1h"),
        (5400, "90m"),
        (7200, "2h"),
        (0.007, "7ms"),
        (0.25, "250ms"),
        (1e-05, "0.01ms"),
        (86400 * 365, "365d"),
        (86400 * 30, "30d"),
        (86400 + 3600, "25h"),
    ],
)
def test_format_is_shortest_whole_form(seconds, text):
    assert format_duration(seconds) == text
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("bad", [-1, -0.001, float("nan"), float("inf"), "5s", None, True, 10**400])
def test_format_refuses_non_durations(bad):
    with pytest.raises(ValueError):
        format_duration(bad)


@given(st.floats(min_value=0, allow_nan=False, allow_infinity=False))
def test_format_round_trips_every_float(seconds):
    text = format_duration(seconds)
    assert parse_duration(text) == seconds
    assert "e" not in text.lower().removesuffix("ms")  # never an exponent


@given(st.integers(min_value=0, max_value=10**9), st.sampled_from(["ms", "s", "m", "h"]))
def test_parse_then_format_keeps_the_value(amount, unit):
    seconds = parse_duration(f"{amount}{unit}")
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.one_of(st.text(), st.integers(), st.floats(), st.none(), st.booleans()))
def test_parse_only_ever_raises_value_error(value):
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        assert DURATION_HINT in str(exc)
    else:
        assert math.isfinite(seconds) and seconds >= 0


NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("text, expected", [
    ("2h", NOW - timedelta(hours=2)),
    ("3d", NOW - timedelta(days=3)),
    ("90m ago", NOW - timedelta(minutes=90)),
    ("0s", NOW),
    ("2026-11-29T10:00", datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc)),
    ("2026-11-29", datetime(2026, 11, 29, tzinfo=timezone.utc)),
    ("2026-11-29T10:00:00+01:00", datetime(2026, 11, 29, 9, 0, tzinfo=timezone.utc)),
    ("2026-11-29T10:00Z", datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc)),
])
def test_parse_when(text, expected):
    assert parse_when(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "-2h", "2h from now", "2026-13-01", "1e9d"])
def test_parse_when_refuses_with_the_hint(text):
    with pytest.raises(ValueError) as caught:
        parse_when(text, NOW)
    assert str(caught.value).startswith(WHEN_HINT)


@given(st.integers(min_value=0, max_value=10**8))
def test_parse_when_of_a_duration_is_that_long_ago(seconds):
    assert parse_when(format_duration(seconds), NOW) == NOW - timedelta(seconds=seconds)
