"""idle_cpu: CPU time (utime+stime of all threads, /proc/PID/stat) of a `shoal run` daemon over
100,000 files during 30 s without changes, after its initial sync settled. No baseline.
Target: < 1 % of one core.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.daemon import DaemonProc
from bench.fixtures import create_db, make_small_files, postgres, workdir
from bench.processes import cpu_seconds
from bench.report import Row, log
from bench.scale import Scale


def measure(sc: Scale) -> list[Row]:
    n = sc.idle_files
    with workdir("idle") as base, postgres(base) as server:
        hub = create_db(server, "hub")
        root = base / "folder"
        root.mkdir()
        log(f"idle_cpu: creating {n} files")
        make_small_files(root, n)
        d = DaemonProc(base, "idle", hub, root, debounce="1s", interval="5m")
        try:
            t = time.monotonic()
            d.start()
            d.wait_settled(n, 1800)
            settle = time.monotonic() - t
            log(f"idle_cpu: initial sync settled after {settle:.0f}s; measuring {sc.idle_seconds:g}s")
            time.sleep(3.0)  # let the status queries above and any tail work finish
            pid = d.proc.pid
            c0, t0 = cpu_seconds(pid), time.monotonic()
            time.sleep(sc.idle_seconds)
            c1, t1 = cpu_seconds(pid), time.monotonic()
            rss_kb = int(next(l for l in Path(f"/proc/{pid}/status").read_text().splitlines()
                              if l.startswith("VmRSS:")).split()[1])
        finally:
            d.stop()
    pct = 100.0 * (c1 - c0) / (t1 - t0)
    return [Row("idle_cpu", "", pct, "%", target="< 1 % of a core", ok=pct < 1.0,
                note=f"daemon over {n} files, {t1 - t0:.0f}s with no changes after the initial sync settled "
                     f"({settle:.0f}s); {c1 - c0:.2f}s CPU; daemon RSS then {rss_kb / 1024:.0f} MB",
                details={"files": n, "cpu_s": c1 - c0, "wall_s": t1 - t0, "settle_s": settle,
                         "rss_kb": rss_kb})]
