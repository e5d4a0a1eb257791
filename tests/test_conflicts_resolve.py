"""Conflicts you can act on (issue 12, item 8): `shoal conflicts resolve PATH --keep
mine|theirs|both`, pushed as normal changes; and the two conflict branches that had no failing
test: a local version moved to a conflict copy when the hub's newer head wins (engine), and a
local edit found while applying a remote change (apply). Without either branch the local version
would only be in a trash; here it must be a file, then kept by `resolve`."""

from __future__ import annotations

import json

import pytest

from shoal.sync.resolve import resolve_conflicts
from tests.devices import Device, assert_converged, sync_all
from tests.fixtures.cli import CliDevice


@pytest.fixture
def pair(tmp_path, hub):
    ds = [Device(tmp_path, n, hub) for n in ("alpha", "beta")]
    yield ds
    for d in ds:
        d.close()


def _copies(d: Device) -> dict[str, bytes]:
    return {p: d.read(p) for p in d.files() if ".sync-conflict-" in p}


def test_the_hubs_newer_head_wins_and_the_local_version_becomes_a_copy(pair):
    alpha, beta = pair
    alpha.write("doc.txt", "base")
    sync_all(pair)
    alpha.write("doc.txt", "alpha's edit", mtime=2_000_000_000)
    beta.write("doc.txt", "beta's edit", mtime=2_000_000_100)  # newer: keeps the path
    beta.sync()
    alpha.sync()  # its push conflicts with beta's head, which wins
    assert alpha.read("doc.txt") == b"beta's edit"
    assert list(_copies(alpha).values()) == [b"alpha's edit"]  # a file, not only the trash
    [c] = alpha.store.conflicts()
    assert (c["winner_device"], c["loser_device"]) == ("beta", "alpha")

    resolve_conflicts(alpha.engine, "doc.txt", "mine")
    sync_all(pair)
    assert_converged(pair)
    assert beta.read("doc.txt") == b"alpha's edit" and not _copies(beta) and not alpha.store.conflicts()


def test_a_local_edit_found_while_applying_is_kept(pair):
    alpha, beta = pair
    alpha.write("n.txt", "base")
    sync_all(pair)
    beta.write("n.txt", "beta's unscanned edit", mtime=2_000_000_100)
    alpha.write("n.txt", "alpha's edit", mtime=2_000_000_000)
    alpha.sync()
    beta.sync(only_scan={})  # beta's pull meets its own edit before any scan saw it
    assert beta.read("n.txt") == b"beta's unscanned edit"
    sync_all(pair)
    heads = assert_converged(pair)
    contents = {beta.read(p) for p in heads}
    assert {b"beta's unscanned edit", b"alpha's edit"} <= contents

    resolve_conflicts(alpha.engine, "n.txt", "theirs")  # alpha's side: theirs is beta's version
    sync_all(pair)
    heads = assert_converged(pair)
    assert set(heads) == {"n.txt"} and alpha.read("n.txt") == b"beta's unscanned edit"


@pytest.mark.slow
def test_conflicts_resolve_through_the_cli(tmp_path, hub):
    laptop, phone = CliDevice(tmp_path, "laptop"), CliDevice(tmp_path, "phone")
    for d in (laptop, phone):
        d.init(hub, hub.add_device(d.name))
        d.folder.mkdir(parents=True, exist_ok=True)
    import os

    (laptop.folder / "todo.txt").write_text("base")
    assert laptop.sync().returncode == 0 and phone.sync().returncode == 0
    (laptop.folder / "todo.txt").write_text("laptop")
    os.utime(laptop.folder / "todo.txt", (2_000_000_000, 2_000_000_000))
    (phone.folder / "todo.txt").write_text("phone")
    os.utime(phone.folder / "todo.txt", (2_000_000_100, 2_000_000_100))
    assert phone.sync().returncode == 0 and laptop.sync().returncode == 0
    [c] = json.loads(laptop.run("conflicts", "--json").stdout)
    bad = laptop.run("conflicts", "resolve", "todo.txt")
    assert bad.returncode == 2 and "--keep" in bad.stderr
    done = laptop.run("conflicts", "resolve", str(laptop.folder / c["conflict_path"]), "--keep", "both")
    assert done.returncode == 0, done.stderr
    assert json.loads(laptop.run("conflicts", "--json").stdout) == []
    assert (laptop.folder / c["conflict_path"]).read_text() == "laptop"  # both kept
    assert phone.sync().returncode == 0
    assert (phone.folder / c["conflict_path"]).read_text() == "laptop"
