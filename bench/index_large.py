"""index_large: first index of large random files by `scan_folder` on a fresh store, against the
baseline `hashlib.file_digest(f, 'sha256')` of the same files, one after the other, in one
thread, in the same run (both from a warm page cache). Target: ratio <= 1.0 (aim 0.6).
"""

from __future__ import annotations

import hashlib
import random
import shutil
import time

from bench.fixtures import read_all, workdir
from bench.report import Row, log
from bench.scale import GiB, MiB, Scale


def measure(sc: Scale) -> list[Row]:
    """First index of large files with scan_folder vs hashlib.file_digest, sequentially."""
    from shoal.scan.scanner import scan_folder
    from shoal.localstore import open_store

    total = sc.large_files * sc.large_size
    with workdir("index") as base:
        root = base / "folder"
        root.mkdir()
        log(f"index_large: writing {sc.large_files} x {sc.large_size // MiB} MiB of random data")
        rng = random.Random(1)
        files = []
        for i in range(sc.large_files):
            p = root / f"big{i:02}.bin"
            with open(p, "wb") as f:
                for _ in range(sc.large_size // (8 * MiB)):
                    f.write(rng.randbytes(8 * MiB))
            files.append(p)
        read_all(files)  # warm cache for both: dropping the page cache needs root and a quiet box

        def baseline() -> float:
            t = time.perf_counter()
            for p in files:
                with open(p, "rb") as f:
                    hashlib.file_digest(f, "sha256").hexdigest()
            return time.perf_counter() - t

        def shoal_index(k: int) -> float:
            state = base / f"state{k}"
            store = open_store(state)
            try:
                t = time.perf_counter()
                result = scan_folder(store, "f", root)
                took = time.perf_counter() - t
            finally:
                store.close()
            shutil.rmtree(state)
            if result.added != len(files):
                raise RuntimeError(f"scan added {result.added} files, expected {len(files)}")
            return took

        base_t, shoal_t = [], []
        for k in range(sc.repeats):  # interleaved, so drift on a noisy machine hits both
            base_t.append(baseline())
            shoal_t.append(shoal_index(k))
            log(f"index_large: round {k + 1}: file_digest {base_t[-1]:.2f}s, scan_folder {shoal_t[-1]:.2f}s")
    b, m = min(base_t), min(shoal_t)
    ratio = m / b
    return [Row("index_large", "", m, "s", b, "file_digest, 1 thread", ratio, "<= 1.0x (aim 0.6x)", ratio <= 1.0,
                f"{total / GiB:.2f} GiB in {sc.large_files} files, warm page cache for both (read once "
                f"before; no cache drop), best of {sc.repeats}; scan {total / m / MiB:.0f} MiB/s, "
                f"baseline {total / b / MiB:.0f} MiB/s",
                {"bytes": total, "baseline_runs": base_t, "shoal_runs": shoal_t})]
