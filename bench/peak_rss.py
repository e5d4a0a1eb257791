"""peak_rss: peak RSS of a `shoal scan` child indexing (a) 100,000 small files, (b) one 4 GiB file
of zeros. No baseline for (a); (b) is compared with the same scan of a 64 MiB file in the same
run. Target: <= 100 MB, and flat in file size (within 10 MB).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.fixtures import make_small_files, workdir, write_config
from bench.processes import ChildRun, check, child_env, run_child, shoal_cmd
from bench.report import Row, log
from bench.scale import GiB, MiB, Scale


def measure(sc: Scale) -> list[Row]:
    """Peak RSS of a `shoal scan` child indexing many files, and one big file."""
    rows = []
    with workdir("rss") as base:
        def scan_rss(folder: Path, tag: str) -> ChildRun:
            cfg = write_config(base / f"{tag}.yaml", name="bench", state=base / f"state-{tag}", hub="embedded",
                               folder=folder)
            return check(run_child(shoal_cmd() + ["scan"], child_env(cfg)), f"shoal scan ({tag})")

        empty = base / "empty"
        empty.mkdir()
        ref = scan_rss(empty, "empty")
        ref_mb = ref.maxrss_kb / 1024

        many = base / "many"
        many.mkdir()
        log(f"peak_rss: creating {sc.small_files} files")
        make_small_files(many, sc.small_files)
        r = scan_rss(many, "many")
        mb = r.maxrss_kb / 1024
        rows.append(Row("peak_rss", f"{sc.small_files // 1000}k_files", mb, "MB", None, "", None, "<= 100 MB",
                        mb <= 100, f"first index of {sc.small_files} files took {r.seconds:.1f}s; "
                        f"`shoal scan` of an empty folder peaks at {ref_mb:.1f} MB",
                        {"maxrss_kb": r.maxrss_kb, "seconds": r.seconds, "empty_folder_maxrss_kb": ref.maxrss_kb}))

        big_size = sc.rss_big_file
        free = shutil.disk_usage(base).free
        note = ""
        if free < big_size * 2 + GiB:
            big_size = 2 * GiB
            note = f"only {free / GiB:.1f} GiB free: used a 2 GiB file instead of {sc.rss_big_file / GiB:g} GiB; "
        sizes = [64 * MiB, big_size]
        got = {}
        for size in sizes:
            folder = base / f"one-{size // MiB}M"
            folder.mkdir()
            log(f"peak_rss: writing a {size / GiB:g} GiB file of zeros (real blocks, not sparse)")
            chunk = bytes(8 * MiB)
            with open(folder / "big.bin", "wb") as f:
                for _ in range(size // len(chunk)):
                    f.write(chunk)
            r = scan_rss(folder, f"one-{size // MiB}M")
            got[size] = r
            (folder / "big.bin").unlink()
        r_big, r_small = got[big_size], got[sizes[0]]
        mb = r_big.maxrss_kb / 1024
        growth = (r_big.maxrss_kb - r_small.maxrss_kb) / 1024
        flat = growth <= 10
        rows.append(Row("peak_rss", f"one_{big_size / GiB:g}GiB_file", mb, "MB", r_small.maxrss_kb / 1024,
                        "same, 64 MiB file", None, "<= 100 MB, flat", mb <= 100 and flat,
                        note + f"RSS grows {growth:+.1f} MB from a 64 MiB to a {big_size / GiB:g} GiB file "
                        f"(flat: <= 10 MB); hashed in {r_big.seconds:.1f}s",
                        {"maxrss_kb": r_big.maxrss_kb, "small_file_maxrss_kb": r_small.maxrss_kb,
                         "file_bytes": big_size, "seconds": r_big.seconds}))
    return rows
