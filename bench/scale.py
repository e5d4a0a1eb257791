"""How much data the benchmarks make: FULL is the scale of DESIGN.md's targets (100,000 files,
1 GiB of large files, a 4 GiB file...), QUICK (`--quick`) a scaled-down run of a few minutes.
"""

from __future__ import annotations

from dataclasses import dataclass


MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class Scale:
    quick: bool
    large_files: int  # index_large: how many large files
    large_size: int  # ... of this size
    small_files: int  # rescan / rss / push / sync
    rss_big_file: int
    latency_samples: int
    idle_files: int
    idle_seconds: float
    repeats: int
    pull_bytes: int = GiB  # front_pull: how much device B pulls (through the TLS front, and over the socket)
    link_files: int = 10_000  # slow_link: small files synced A -> B across the slow link
    big_file: int = GiB  # big_file: the one file synced A -> B, then edited in its middle


FULL = Scale(False, 8, 128 * MiB, 100_000, 4 * GiB, 30, 100_000, 30.0, 3)
QUICK = Scale(True, 4, 64 * MiB, 10_000, 512 * MiB, 15, 20_000, 10.0, 2, pull_bytes=256 * MiB,
              link_files=2_000, big_file=256 * MiB)
