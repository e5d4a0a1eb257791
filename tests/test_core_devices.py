"""core.devices: when `shoal devices` flags a device silent."""

from __future__ import annotations

import datetime as dt

import pytest

from shoal.core.devices import SILENT_AFTER, is_silent

NOW = dt.datetime(2026, 11, 30, 14, 0, tzinfo=dt.timezone.utc)
DAY = dt.timedelta(days=1)
SEC = dt.timedelta(seconds=1)


@pytest.mark.parametrize("push,pull,silent", [
    (None, None, True),                      # never seen
    (NOW, None, False),
    (None, NOW, False),
    (NOW - DAY, None, False),                # exactly one day: not yet
    (NOW - DAY - SEC, None, True),
    (None, NOW - DAY - SEC, True),
    (NOW - 3 * DAY, NOW - SEC, False),       # the latest of push and pull counts
    (NOW - SEC, NOW - 3 * DAY, False),
    (NOW - 2 * DAY, NOW - 3 * DAY, True),
    (NOW + DAY, None, False),                # a clock ahead of ours: seen
], ids=["never", "pushed-now", "pulled-now", "one-day", "one-day-and-a-second",
        "pull-only-old", "recent-pull", "recent-push", "both-old", "future"])
def test_is_silent(push, pull, silent):
    assert is_silent(push, pull, NOW) is silent


def test_silent_after_is_one_day():
    assert SILENT_AFTER == dt.timedelta(seconds=86400)
