"""latency_big (extra, not in DESIGN.md's table): `latency` again, but both folders already hold
100,000 files, so it shows whether a change costs O(folder). No baseline; same targets as
`latency` (p50 <= 1 s, p90 <= 2 s).
"""

from __future__ import annotations

import time

from bench.fixtures import create_db, make_small_files, postgres, workdir
from bench.latency import latency_rows, latency_samples, two_daemons
from bench.report import Row, log
from bench.scale import Scale


def measure(sc: Scale) -> list[Row]:
    """`latency` in folders that already hold many files (a cycle that rescans the folder shows)."""
    n = sc.idle_files
    with workdir("latency-big") as base, postgres(base) as server:
        hub = create_db(server, "hub")
        a_root, b_root = base / "a-folder", base / "b-folder"
        a_root.mkdir()
        b_root.mkdir()
        log(f"latency_big: creating {n} files on A")
        make_small_files(a_root, n)
        a = b = None
        try:
            t = time.monotonic()
            a, b = two_daemons(base, hub, a_root, b_root, n, 3600)
            log(f"latency_big: both daemons settled after {time.monotonic() - t:.0f}s")
            samples = latency_samples(a_root, b_root, max(10, sc.latency_samples // 3), "latency_big")
        finally:
            for d in (a, b):
                if d is not None:
                    d.stop()
    return latency_rows("latency_big", samples, f"folders of {n} files")
