"""Bandwidth limits end to end (issue 13 item 4): two devices set up through the `shoal` command
with least-privilege device logins and a real hub; `sync.max_upload_rate` on one and
`sync.max_download_rate` on the other (1 MB/s up, 2 MB/s down) hold a 10 MB transfer (random bytes: nothing to dedup) to
the rate within 20%, and `shoal status` shows the limits."""

from __future__ import annotations

import os
import time

import pytest
import yaml

from tests.fixtures.cli import CliDevice

UP_RATE = 1_000_000  # bytes per second, as "1MB/s": 10 MB in 10 s (the figure)
DOWN_RATE = 2_000_000  # "2MB/s": 5 s
SIZE = 10_000_000  # 10 MB


def _ok(proc) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr.strip()}"
    assert "Traceback" not in proc.stderr
    return proc.stdout


def _timed_sync(device: CliDevice) -> float:
    started = time.monotonic()
    _ok(device.sync())
    return time.monotonic() - started


def _set_sync_keys(device: CliDevice, **keys: str) -> None:
    cfg = yaml.safe_load(device.config.read_text())
    cfg.setdefault("sync", {})
    cfg["sync"] = {**(cfg["sync"] or {}), **keys}
    device.config.write_text(yaml.safe_dump(cfg))
    _ok(device.run("config", "check"))


@pytest.mark.slow
def test_upload_and_download_limits_hold_a_10_mb_transfer_to_the_rate(tmp_path, hub):
    laptop, phone = CliDevice(tmp_path, "laptop"), CliDevice(tmp_path, "phone")
    for d in (laptop, phone):
        d.init(hub, hub.add_device(d.name))

    # Baselines: the same commands for a tiny file, without limits (process start, scan, hub).
    (laptop.folder / "tiny.txt").write_text("tiny")
    base_up = _timed_sync(laptop)
    base_down = _timed_sync(phone)
    assert phone.tree() == laptop.tree()
    assert "limits" not in _ok(laptop.run("status"))  # the status line only when a limit is set
    assert laptop.json("status")["limits"] == {"upload": None, "download": None}

    _set_sync_keys(laptop, max_upload_rate="1MB/s")
    _set_sync_keys(phone, max_download_rate="2MB/s")
    (laptop.folder / "big.bin").write_bytes(os.urandom(SIZE))
    up = _timed_sync(laptop)
    down = _timed_sync(phone)
    assert phone.tree() == laptop.tree()
    # The baselines again, with the limits on: the quicker of the two runs of each is the overhead
    # (a busy machine only ever makes a run slower).
    (laptop.folder / "tiny.txt").write_text("tiny again")
    base_up = min(base_up, _timed_sync(laptop))
    base_down = min(base_down, _timed_sync(phone))
    up -= base_up
    down -= base_down
    print(f"upload phase {up:.2f} s, download phase {down:.2f} s (expected {SIZE / UP_RATE:.1f} s and "
          f"{SIZE / DOWN_RATE:.1f} s ± 20%; baselines {base_up:.2f} s, {base_down:.2f} s)")
    assert 0.8 * SIZE / UP_RATE <= up <= 1.2 * SIZE / UP_RATE, f"upload of 10 MB at 1MB/s took {up:.2f} s"
    assert 0.8 * SIZE / DOWN_RATE <= down <= 1.2 * SIZE / DOWN_RATE, f"download of 10 MB at 2MB/s took {down:.2f} s"

    # status shows the limits, in JSON and in one line of text
    assert laptop.json("status")["limits"] == {"upload": "1 MB/s", "download": None}
    assert phone.json("status")["limits"] == {"upload": None, "download": "2 MB/s"}
    assert "limits  upload 1 MB/s, download unlimited" in _ok(laptop.run("status"))
    assert "limits  upload unlimited, download 2 MB/s" in _ok(phone.run("status"))
