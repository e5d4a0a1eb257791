"""kill -9 at random points of `shoal sync --now` and of `shoal run`: afterwards everything
converges, no change is stored twice at the hub, and no partial file is ever visible. The kills
during `sync --now` also run with end-to-end encrypted folders (fewer rounds, the same kill points:
start-up, scan, push, pull, apply); those of `shoal run` land on the same points, plain only."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time

import psycopg
import pytest

from tests.daemons import shoal, wait_for
from tests.fixtures.devices import both_ways

pytestmark = pytest.mark.slow
ITERATIONS = int(os.environ.get("SHOAL_KILL9_ITERATIONS", "40"))
#: The sealed runs repeat the plain ones' kill points with the sealing layer in between: fewer
#: rounds (each `shoal` process also unwraps the folder key with scrypt, ~0.3 s).
SEALED_ITERATIONS = int(os.environ.get("SHOAL_KILL9_SEALED_ITERATIONS", "10"))


def _iterations(encryption: str) -> int:
    return ITERATIONS if encryption == "plain" else SEALED_ITERATIONS


def _disk(root) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if os.path.samefile(dirpath, root):
            dirnames[:] = [d for d in dirnames if d != ".shoal"]
        for fn in filenames:
            p = os.path.join(dirpath, fn)
            out[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def _mutate(rng: random.Random, root, written: set[str]) -> None:
    for _ in range(rng.randint(1, 6)):
        name = f"d{rng.randint(0, 3)}/f{rng.randint(0, 9)}.bin"
        p = root / name
        op = rng.random()
        if op < 0.7:
            size = rng.choice([0, 10, 5000, 300_000, 2_000_000])
            data = rng.randbytes(size)
            written.add(hashlib.sha256(data).hexdigest())
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        elif p.exists():
            p.unlink()


def _assert_no_partial(devices, written: set[str]) -> None:
    for d in devices:
        for rel, sha in _disk(d.root).items():
            assert sha in written, f"{d.name}: {rel} holds content no device ever wrote (partial file?)"


def _hub_changes(url):
    # Sealed rows show a sealed path and a content id: both deterministic, so a change stored
    # twice still shows as the same (device, content id, deleted) twice in a row at one path.
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT device_id, path, sha256, deleted FROM shoal.changes ORDER BY id").fetchall()


def _assert_nothing_stored_twice(url) -> None:
    last: dict[str, tuple] = {}
    for dev, path, sha, deleted in _hub_changes(url):
        state = (dev, sha, deleted)
        assert last.get(path) != state, f"{path}: the same change was stored twice"
        last[path] = state


def _assert_encryption(url, encryption: str) -> None:
    with psycopg.connect(url) as conn:
        sealed = conn.execute("SELECT DISTINCT sealed IS NOT NULL FROM shoal.changes").fetchall()
    assert sealed == [(encryption == "sealed",)], "the folder was not synced as the test asked"


def _converge(devices):
    for _ in range(2):
        for d in devices:
            proc = shoal(d.config, "sync", "--now", timeout=120)
            assert proc.returncode == 0, proc.stderr
    disks = [_disk(d.root) for d in devices]
    assert all(x == disks[0] for x in disks), "devices did not converge"
    return disks[0]


@both_ways
def test_kill9_during_sync_now(hub_url, make_daemon, encryption):
    rng = random.Random(int(os.environ.get("SHOAL_KILL9_SEED", "1234")))
    iterations = _iterations(encryption)
    startup = 0.0 if encryption == "plain" else 0.3  # scrypt: the cycle starts that much later
    a = make_daemon("alpha")
    b = make_daemon("beta")
    for d in (a, b):
        d.root.mkdir(parents=True)
    written: set[str] = {hashlib.sha256(b"").hexdigest()}
    kills = 0
    for i in range(iterations):
        actor = a if i % 2 == 0 else b
        _mutate(rng, actor.root, written)
        victim = rng.choice([a, b])
        proc = subprocess.Popen([sys.executable, "-m", "shoal", "--config", str(victim.config), "sync", "--now"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # start-up is ~0.3 s: kills land in start-up, scan, push, pull, apply
        time.sleep(startup + rng.uniform(0.05, 0.7))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        _assert_no_partial([a, b], written)
    assert kills >= iterations // 3, "too few kills landed mid-cycle to mean anything"
    final = _converge([a, b])
    _assert_no_partial([a, b], written)
    _assert_nothing_stored_twice(hub_url)
    _assert_encryption(hub_url, encryption)
    assert final, "nothing synced at all"


def test_kill9_of_running_daemon(hub_url, make_daemon, encryption):
    rng = random.Random(99)
    a = make_daemon("alpha", interval="1s")
    b = make_daemon("beta", interval="1s")
    for d in (a, b):
        d.root.mkdir(parents=True)
    written: set[str] = {hashlib.sha256(b"").hexdigest()}
    try:
        for i in range(max(3, _iterations(encryption) // 4)):
            a.start()
            b.start()
            _mutate(rng, a.root, written)
            _mutate(rng, b.root, written)
            time.sleep(rng.uniform(0.05, 1.5))
            for d in (a, b):
                d.stop(signal.SIGKILL)
            _assert_no_partial([a, b], written)
        a.start()
        b.start()
        wait_for(lambda: _disk(a.root) == _disk(b.root) and
                 a.status()["folders"][0]["waiting"] == 0 and b.status()["folders"][0]["waiting"] == 0,
                 timeout=60, interval=0.5, what="daemons to converge")
    finally:
        for d in (a, b):
            if d.proc is not None:
                d.stop(signal.SIGKILL)
    _assert_no_partial([a, b], written)
    _assert_nothing_stored_twice(hub_url)
    _assert_encryption(hub_url, encryption)
