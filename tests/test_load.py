"""Load: five devices push 6,000 changes each (SHOAL_LOAD_PER_DEVICE; bench/ measures throughput at scale) into one hub at once while two others pull.

All converge, and the hub holds exactly the expected rows. Throughput and the slowest
puller's lag are printed (run with -s to see them)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psycopg
import pytest

from tests.daemons import DaemonDevice

pytestmark = pytest.mark.slow
PUSHERS = 5
PER_DEVICE = int(os.environ.get("SHOAL_LOAD_PER_DEVICE", "6000"))
PULLERS = 2


def _sync(d: DaemonDevice) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "shoal", "--config", str(d.config), "sync", "--now"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_five_pushers_two_pullers(tmp_path, hub, hub_url):
    pushers = [DaemonDevice(tmp_path, f"push{i}", hub) for i in range(PUSHERS)]
    pullers = [DaemonDevice(tmp_path, f"pull{i}", hub) for i in range(PULLERS)]
    for i, d in enumerate(pushers):
        for j in range(PER_DEVICE):
            sub = d.root / f"dev{i}" / f"d{j // 1000:02}"
            if j % 1000 == 0:
                sub.mkdir(parents=True)
            (sub / f"f{j:05}.txt").write_text(f"device {i} file {j}\n")
    for d in pullers:
        d.root.mkdir(parents=True)
    started = time.monotonic()
    procs = [_sync(d) for d in pushers]
    pull_rounds = 0
    while any(p.poll() is None for p in procs):
        for d in pullers:  # pull in a loop while the pushes go on
            r = subprocess.run([sys.executable, "-m", "shoal", "--config", str(d.config), "sync", "--now"],
                               capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            pull_rounds += 1
    for p in procs:
        out, err = p.communicate()
        assert p.returncode == 0, err
    pushed_at = time.monotonic()
    for d in pullers:
        r = subprocess.run([sys.executable, "-m", "shoal", "--config", str(d.config), "sync", "--now"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    done_at = time.monotonic()
    total = PUSHERS * PER_DEVICE
    # Directories are entries too: dev<i> and its d<NN> subdirectories.
    entries = total + PUSHERS * (1 + (PER_DEVICE + 999) // 1000)
    with psycopg.connect(hub_url) as conn:
        rows = conn.execute("SELECT count(*), count(DISTINCT (device_id, incarnation, seq)) FROM shoal.changes").fetchone()
        heads = conn.execute("SELECT count(*) FROM shoal.heads WHERE NOT deleted").fetchone()[0]
    assert rows == (entries, entries)
    assert heads == entries
    for d in pullers:
        got = sum(len(files) for _, _, files in os.walk(d.root / "dev0")) + sum(
            len(files) for i in range(1, PUSHERS) for _, _, files in os.walk(d.root / f"dev{i}"))
        assert got == total
        last = PER_DEVICE - 1
        assert (d.root / "dev3" / f"d{last // 1000:02}" / f"f{last:05}.txt").read_text() == f"device 3 file {last}\n"
    print(f"\nload: {total} changes from {PUSHERS} devices pushed in {pushed_at - started:.1f}s "
          f"({total / (pushed_at - started):.0f} changes/s) while {PULLERS} devices pulled "
          f"({pull_rounds} rounds); slowest puller complete {done_at - pushed_at:.1f}s after the last push")
