"""Property (issue 12): random schedules of edits, deletes, restores and garbage collections on
three devices (real hub, device logins): after every step all devices converge, and `restore
--at T` reproduces the folder as it was at T whenever T is within what the hub keeps (after the
last collection: `--keep 0s` here, so every earlier point is out of the window)."""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timezone

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoal.hub.gc import collect_garbage
from shoal.sync.history import History
from tests.devices import Device, assert_converged, sync_all

pytestmark = pytest.mark.slow
_examples = itertools.count()

OPS = st.lists(st.tuples(st.sampled_from(["edit", "edit", "delete", "restore", "gc"]),
                         st.integers(0, 2), st.integers(0, 3), st.integers(0, 10**6)),
               min_size=3, max_size=9)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_random_histories_converge_and_restore_reproduces_the_past(tmp_path_factory, hub, ops):
    n = next(_examples)
    base = tmp_path_factory.mktemp(f"history{n}")
    devices = [Device(base, f"{name}{n}", hub) for name in ("laptop", "phone", "tablet")]
    try:
        snapshots: list[tuple[datetime, dict[str, str]]] = []  # points since the last collection
        for kind, who, file, value in ops:
            d = devices[who]
            path = f"f{file}.txt"
            if kind == "edit":
                d.write(path, f"{path} = {value}")
            elif kind == "delete" and (d.root / path).exists():
                (d.root / path).unlink()
            elif kind == "restore" and snapshots:
                when, expected = snapshots[value % len(snapshots)]
                report = History(d.engine).restore(None, at=when)
                assert not report.failed
                sync_all(devices)
                assert assert_converged(devices) == expected, f"restore --at {when} did not reproduce it"
            elif kind == "gc":
                with psycopg.connect(hub.owner_url) as conn:
                    collect_garbage(conn, keep=0, grace=0)
                snapshots.clear()
            sync_all(devices)
            heads = assert_converged(devices)
            time.sleep(0.02)
            snapshots.append((datetime.now(timezone.utc), heads))
            time.sleep(0.02)
    finally:
        for d in devices:
            d.close()
