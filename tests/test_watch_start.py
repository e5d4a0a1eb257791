"""A file written right after the daemon made its folder (or a drive was mounted) syncs within
the debounce time, not at the next periodic rescan (issue 13, item 6): once a watch is set on a
folder, the folder is rescanned once, since events before the watch were never seen."""

from __future__ import annotations

import json
import time

import pytest

from tests.daemons import wait_for
from tests.fixtures.cli import run_shoal

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sealed"])
def encryption(request):
    """Sealed: opening the folder's key makes the first cycle longer, and the gap wider."""
    return request.param


def test_a_file_written_just_after_the_folder_appears_syncs_at_once(make_daemon):
    d = make_daemon("laptop", interval="5m")
    d.write_config()
    assert not d.root.exists()
    d.start()
    wait_for(lambda: (d.root / ".shoal").exists(), timeout=30, interval=0.01, what="the daemon to make its folder")
    appeared = time.monotonic()
    names = []
    for i in range(1, 7):  # one of them lands between the first scan and the watch
        time.sleep(max(0.0, appeared + 0.1 * i - time.monotonic()))
        names.append(f"early-{i}.txt")
        (d.root / names[-1]).write_text(f"written {0.1 * i:.1f} s after the folder appeared")
    written = time.monotonic()

    def on_hub() -> bool:
        proc = run_shoal("--config", str(d.config), "log", "--json")
        return proc.returncode == 0 and {e["path"] for e in json.loads(proc.stdout)} >= set(names)

    wait_for(on_hub, timeout=30, interval=0.2, what="every early file on the hub")
    assert time.monotonic() - written < 3.0
