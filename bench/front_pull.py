"""front_pull: device B's first `shoal sync --now` of 1 GiB (4 random files) through the TLS front
of a served embedded hub, against the same pull over the embedded server's Unix socket, in one
run. Target: the front costs at most 20% (TLS time <= 1.2x socket time).

Device A (`shoal run`, `hub.serve.listen` on 127.0.0.1:<free port>) holds the files and has
pushed them to its embedded hub before anything is timed. Then, with A's daemon still running:
- tls: a fresh device joined with `shoal hub add-device` + `shoal join TOKEN --folder docs=PATH`
  (own HOME), reaching the hub through the front (TLS, its own device login, SCRAM);
- socket: a fresh device on the same machine whose hub.url is the owner's conninfo of A's
  embedded hub (its Unix socket, peer authentication as `postgres`).
Each pull is a new device with an empty folder and store (the join itself is not timed), run
`repeats` times in alternating order (socket, tls, tls, socket, ...); medians are compared.
After each pull a second `shoal sync --now` with nothing to pull gives the fixed cost of the
path (process start, connecting, an empty cycle). CPU seconds of B, of A's daemon (where the
front's threads run) and of the PostgreSQL server (postmaster and its exited backends) are
in the details.
"""

from __future__ import annotations

import filecmp
import os
import random
import shutil
import statistics
import time
from pathlib import Path

from bench.fixtures import workdir
from bench.processes import check, run_child, shoal_cmd
from bench.report import Row, log
from bench.scale import MiB, Scale
from bench.served import JoinedDevice, ServedOwner, socket_device_env

FILES = 4
TARGET = 1.2


def make_random_files(root: Path, total: int, n: int = FILES) -> list[Path]:
    paths = []
    each = total // n
    for i in range(n):
        rng = random.Random(1000 + i)
        p = root / f"big{i}.bin"
        with open(p, "wb") as f:
            left = each
            while left:
                k = min(left, 8 * MiB)
                f.write(rng.randbytes(k))
                left -= k
        paths.append(p)
    return paths


def cpu_with_children(pid: int) -> float:
    """utime+stime+cutime+cstime of a process: its own CPU and that of the children it has
    waited for (a postmaster's exited backends). 0.0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def measure(sc: Scale) -> list[Row]:
    size = sc.pull_bytes
    with workdir("front-pull") as base:
        a_root = base / "a-folder"
        a_root.mkdir()
        log(f"front_pull: writing {FILES} random files, {size // MiB} MiB in all, on A")
        files = make_random_files(a_root, size)
        a = ServedOwner(base, "a", a_root)
        runs: dict[str, list[dict]] = {"socket": [], "tls": []}
        try:
            t = time.monotonic()
            a.start()
            a.wait_serving()
            a.wait_settled(FILES, 3600)
            push_s = time.monotonic() - t
            log(f"front_pull: A served on {a.listen} and pushed {size // MiB} MiB in {push_s:.0f}s")
            pm_pid = a.postmaster()[0]
            for i in range(sc.repeats):
                for kind in (("socket", "tls") if i % 2 == 0 else ("tls", "socket")):
                    name = f"{kind}{i}"
                    if kind == "tls":
                        dev = JoinedDevice(base, name, a)
                        env, folder = dev.env, dev.folder
                    else:
                        folder = base / name / "folder"
                        env = socket_device_env(base, name, a, folder)
                        folder.mkdir()
                    os.sync()  # the previous run's writes are not flushed during this one
                    time.sleep(1.0)
                    cpu_a, cpu_pg = cpu_with_children(a.proc.pid), cpu_with_children(pm_pid)
                    r = check(run_child(shoal_cmd() + ["sync", "--now"], env), f"{name}: shoal sync --now")
                    cpu_a, cpu_pg = cpu_with_children(a.proc.pid) - cpu_a, cpu_with_children(pm_pid) - cpu_pg
                    for p in files:
                        q = folder / p.name
                        if not q.exists() or q.stat().st_size != p.stat().st_size:
                            raise RuntimeError(f"{name}: {q} missing or of the wrong size after the pull; "
                                               f"B said: {r.stdout} {r.stderr[-500:]}")
                    if i < 2 and not filecmp.cmp(files[-1], folder / files[-1].name, shallow=False):
                        raise RuntimeError(f"{name}: {files[-1].name} differs from A's")
                    noop = check(run_child(shoal_cmd() + ["sync", "--now"], env), f"{name}: second sync --now")
                    runs[kind].append({"seconds": r.seconds, "mbps": size / r.seconds / 1e6,
                                       "b_cpu_s": r.cpu_user + r.cpu_sys, "a_daemon_cpu_s": cpu_a,
                                       "server_cpu_s": cpu_pg, "noop_s": noop.seconds})
                    log(f"front_pull: {name}: {r.seconds:.2f}s ({size / r.seconds / 1e6:.0f} MB/s), "
                        f"B CPU {r.cpu_user + r.cpu_sys:.1f}s, A daemon CPU {cpu_a:.1f}s, server CPU {cpu_pg:.1f}s; "
                        f"empty sync after it {noop.seconds:.2f}s")
                    shutil.rmtree(base / name, ignore_errors=True)
        finally:
            a.stop()

    def med(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[kind])

    tls, sock = med("tls", "seconds"), med("socket", "seconds")
    ratio = tls / sock
    tls_noop, sock_noop = med("tls", "noop_s"), med("socket", "noop_s")
    cpu = {k: {c: med(k, c) for c in ("b_cpu_s", "a_daemon_cpu_s", "server_cpu_s")} for k in runs}
    mib = size // MiB
    details = {"bytes": size, "files": FILES, "a_push_s": push_s, "runs": runs, "listen": "127.0.0.1"}
    cpu_note = (f"median CPU, tls: B {cpu['tls']['b_cpu_s']:.1f}s, A daemon (front) "
                f"{cpu['tls']['a_daemon_cpu_s']:.1f}s, server {cpu['tls']['server_cpu_s']:.1f}s; socket: B "
                f"{cpu['socket']['b_cpu_s']:.1f}s, A daemon {cpu['socket']['a_daemon_cpu_s']:.1f}s, server "
                f"{cpu['socket']['server_cpu_s']:.1f}s")
    return [
        Row("front_pull", "tls_vs_socket", tls, "s", sock, "Unix socket, same run", ratio, f"<= {TARGET}x",
            ratio <= TARGET,
            f"B's first `shoal sync --now` of {mib} MiB ({FILES} random files) from A's served embedded hub: "
            f"joined device through the TLS front on 127.0.0.1 vs a device with the owner's conninfo on the "
            f"Unix socket; median of {len(runs['tls'])} each, alternating order; A's `shoal run` pushed it "
            f"first ({push_s:.0f}s); {cpu_note}", details),
        Row("front_pull", "MB/s", size / tls / 1e6, "MB/s", size / sock / 1e6, "Unix socket", sock / tls, "", None,
            "MB = 10^6 bytes, whole `shoal sync --now` wall time (process start included)"),
        Row("front_pull", "empty_sync", tls_noop, "s", sock_noop, "Unix socket", tls_noop / sock_noop, "", None,
            "a second `shoal sync --now` with nothing to pull: process start, connect (TLS + SCRAM through the "
            "front, or peer on the socket), an empty cycle"),
        Row("front_pull", "minus_empty_sync", tls - tls_noop, "s", sock - sock_noop, "Unix socket",
            (tls - tls_noop) / (sock - sock_noop), "", None,
            "the pull minus the empty sync of the same path: roughly the transfer and write alone"),
    ]
