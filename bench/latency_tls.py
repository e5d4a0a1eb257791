"""latency_tls: `latency` with B joined through the TLS front. Device A runs `shoal run` owning the
embedded hub served on 127.0.0.1 (it talks to its own hub over the Unix socket); device B, a
HOME of its own set up only with `shoal join TOKEN --folder docs=PATH`, runs `shoal run` and talks
to the hub over TLS through A's front (its own device login). Both daemons with debounce 200ms.
The time from a file saved on A until B has it with the right content, p50 and p90 over distinct
files (bench/latency.py's sampling). No baseline. Target (DESIGN.md, "also over TLS"):
p50 <= 0.5 s, p90 <= 1 s.
"""

from __future__ import annotations

import time

from bench.fixtures import workdir
from bench.latency import latency_samples, percentile
from bench.report import Row, log
from bench.scale import Scale
from bench.served import JoinedDevice, ServedOwner


def measure(sc: Scale) -> list[Row]:
    with workdir("latency-tls") as base:
        a_root = base / "a-folder"
        a_root.mkdir()
        (a_root / "hello.txt").write_text("hello\n")
        a = b = None
        try:
            a = ServedOwner(base, "a", a_root, debounce="200ms")
            a.start()
            a.wait_serving()
            a.wait_settled(1, 120)
            b = JoinedDevice(base, "b", a, debounce="200ms")
            b.start()
            b.wait_settled(1, 120)
            a.wait_settled(1, 120)
            time.sleep(1.0)
            log(f"latency_tls: A serves on {a.listen}; B joined through the front, both settled")
            samples = latency_samples(a_root, b.folder, sc.latency_samples, "latency_tls")
        finally:
            for d in (b, a):
                if d is not None:
                    d.stop()
    p50, p90 = percentile(samples, 0.5), percentile(samples, 0.9)
    return [
        Row("latency_tls", "p50", p50, "s", target="<= 0.5 s", ok=p50 <= 0.5,
            note=f"{len(samples)} files saved on A, polled on B every 10 ms; two `shoal run` daemons, "
                 f"debounce 200ms; A owns the embedded hub served on 127.0.0.1 (socket), B joined with "
                 f"`shoal join` and reaches it through the TLS front; min {min(samples):.3f}s "
                 f"max {max(samples):.3f}s",
            details={"samples": samples}),
        Row("latency_tls", "p90", p90, "s", target="<= 1 s", ok=p90 <= 1.0),
    ]
