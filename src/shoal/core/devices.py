"""Rules about the devices of a hub, as `shoal devices` shows them. Pure: the clock is passed in."""

from __future__ import annotations

import datetime as dt

#: A device that has neither pushed nor pulled for longer than this is flagged silent.
SILENT_AFTER = dt.timedelta(days=1)


def is_silent(last_push_at: dt.datetime | None, last_pull_at: dt.datetime | None,
              now: dt.datetime) -> bool:
    """Whether a device last seen (its latest push or pull) more than SILENT_AFTER before `now`,
    or never seen, is silent. Raises nothing."""
    seen = max([t for t in (last_push_at, last_pull_at) if t], default=None)
    return seen is None or now - seen > SILENT_AFTER
