"""rescan_100k: `shoal scan` (a new process) of 100,000 unchanged, already indexed small files,
against the baseline `find DIR -type f -printf '%s %T@ %i\n'` in the same run.
Target: ratio <= 2.0, process start included.
"""

from __future__ import annotations

import statistics
import subprocess
import time

from bench.fixtures import make_small_files, workdir, write_config
from bench.processes import check, child_env, run_child, shoal_cmd
from bench.report import Row, log
from bench.scale import Scale


def measure(sc: Scale) -> list[Row]:
    """No-change rescan of n small files: `shoal scan` subprocess vs `find -printf`."""
    n = sc.small_files
    with workdir("rescan") as base:
        root = base / "folder"
        root.mkdir()
        log(f"rescan: creating {n} files")
        make_small_files(root, n)
        cfg = write_config(base / "config.yaml", name="bench", state=base / "state", hub="embedded", folder=root)
        env = child_env(cfg)
        # As an installed shoal runs: with its bytecode cached (pip compiles it at install); the
        # untimed first scan fills the cache. (PYTHONDONTWRITEBYTECODE would compile every module
        # at every start: ~0.15 s here.)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(base / "pycache")
        first = check(run_child(shoal_cmd() + ["scan"], env), "shoal scan (first)")
        if f"{n} added" not in first.stdout:
            raise RuntimeError(f"first scan did not add {n} files: {first.stdout}")
        log(f"rescan: first index {first.seconds:.1f}s")
        find_cmd = ["find", str(root), "-type", "f", "-printf", r"%s %T@ %i\n"]
        subprocess.run(find_cmd, stdout=subprocess.DEVNULL, check=True)  # warm dentry/inode cache for both
        base_t, shoal_t = [], []
        for k in range(max(3, sc.repeats)):
            t = time.perf_counter()
            fr = subprocess.run(find_cmd, stdout=subprocess.DEVNULL)
            base_t.append(time.perf_counter() - t)
            if fr.returncode:
                raise RuntimeError("find failed")
            r = check(run_child(shoal_cmd() + ["scan"], env), "shoal scan (rescan)")
            if "0 added, 0 modified, 0 deleted" not in r.stdout:
                raise RuntimeError(f"rescan found changes: {r.stdout}")
            shoal_t.append(r.seconds)
            log(f"rescan: round {k + 1}: find {base_t[-1]:.2f}s, shoal scan {shoal_t[-1]:.2f}s")
        startup = statistics.median(
            run_child(shoal_cmd() + ["--version"], env).seconds for _ in range(3))
    b, m = statistics.median(base_t), statistics.median(shoal_t)
    ratio = m / b
    return [
        Row("rescan_100k" if n == 100_000 else f"rescan_{n // 1000}k", "", m, "s", b, "find -printf", ratio,
            "<= 2x incl. process start", ratio <= 2.0,
            f"{n} unchanged files in {n // 1000} dirs, median of {len(shoal_t)}, warm cache; "
            f"first index took {first.seconds:.1f}s; `shoal --version` alone {startup:.2f}s; bytecode cached",
            {"files": n, "baseline_runs": base_t, "shoal_runs": shoal_t, "first_index_s": first.seconds,
             "process_start_s": startup}),
    ]
