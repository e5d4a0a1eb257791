"""Round trips to the hub per sync cycle (issue 14, item 4): over a slow link each one costs a
network round trip, so a cycle must cost a small constant number of them. Counted as statements
sent (one `Hub._rows` call, or one pipeline of several statements), with device logins of a
real hub, plain and encrypted."""

from __future__ import annotations

import pytest

from shoal.hub.client import Hub
from shoal.sync.engine import SyncEngine
from tests.fixtures.devices import both_ways


@pytest.fixture
def trips(monkeypatch):
    sent: list[str] = []
    rows, pipeline = Hub._rows, Hub._pipeline

    def count_rows(self, what, *args, **kw):
        sent.append(what)
        return rows(self, what, *args, **kw)

    def count_pipeline(self, what, *args, **kw):
        sent.append(what)
        return pipeline(self, what, *args, **kw)

    monkeypatch.setattr(Hub, "_rows", count_rows)
    monkeypatch.setattr(Hub, "_pipeline", count_pipeline)
    return sent


def _fresh(d):
    """A new engine, as each `shoal sync --now` process has: nothing of the folders cached."""
    d.engine = SyncEngine(d.config, d.store, d.hub)
    return d


@both_ways
def test_a_cycle_costs_a_few_round_trips(make_device, trips):
    a, b = make_device("alpha"), make_device("beta")
    a.write("notes.txt", "v1")
    for d in (a, b, a, b):
        d.sync()

    trips.clear()
    _fresh(a).sync()
    assert len(trips) <= 3, f"a cycle with nothing to do: {trips}"

    a.write("notes.txt", "v2")
    trips.clear()
    _fresh(a).sync()
    assert len(trips) <= 6, f"pushing one edit: {trips}"

    trips.clear()
    _fresh(b).sync()
    assert len(trips) <= 5, f"pulling one edit: {trips}"
    assert b.read("notes.txt") == b"v2"
