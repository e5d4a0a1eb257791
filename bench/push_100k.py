"""push_100k: rows/s of the engine's push phase (`SyncEngine._push`) for 100,000 changelog rows,
contents already uploaded, against the baseline of a raw `COPY` of 100,000 equivalent rows into
a plain table of the same PostgreSQL in the same run. Target: >= 0.5x COPY's rows/s.
For information also: the time inside `Hub.push()` alone, and a whole `shoal sync --now`.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from pathlib import Path

from bench.fixtures import create_db, make_small_files, postgres, workdir, write_config
from bench.processes import check, child_env, run_child, shoal_cmd
from bench.report import Row, log
from bench.scale import Scale


def _rows(n: int) -> tuple[str, str, list[tuple]]:
    """n changelog-like rows (folder_id, path, device_id, incarnation, seq, kind, size, mtime_ns,
    sha256, deleted, payload) of one device, as a push of n new small files would make."""
    import uuid

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
    return dev, inc, rows


def _copy_baseline(uri: str, n: int, repeats: int) -> list[float]:
    """Seconds to COPY n changelog-like rows into a plain table (fresh table each time)."""
    import psycopg

    _, _, rows = _rows(n)
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


def _copy_into_hub_tables(server, n: int, repeats: int) -> list[float]:
    """The machine's limit for storing a push: seconds to COPY the same n rows straight into a
    fresh hub's changelog and heads (their indexes and checks, one transaction), as its owner."""
    import hashlib as h

    import psycopg

    dev, inc, rows = _rows(n)
    times = []
    for k in range(repeats):
        uri = create_db(server, f"copyhub{k}")
        check(run_child(shoal_cmd() + ["hub", "init", "--url", uri], child_env()), "shoal hub init")
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("SELECT shoal.register_device(%s, 'copy')", (dev,))
            space = conn.execute("SELECT space FROM shoal.devices WHERE device_id = %s", (dev,)).fetchone()[0]
            t = time.perf_counter()
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy("COPY shoal.changes (space, folder_id, path, device_id, incarnation, seq, kind, size,"
                              " mtime_ns, sha256, deleted, payload_md5, path_hash) FROM STDIN") as cp:
                    for f, path, d, i, seq, kind, size, mtime, sha, deleted, payload in rows:
                        cp.write_row((space, f, path, d, i, seq, kind, size, mtime, sha, deleted,
                                      h.md5(payload.encode()).hexdigest(), h.sha256(path.encode()).digest()))
                with cur.copy("COPY shoal.heads (space, folder_id, path, path_hash, version, device_id, incarnation,"
                              " kind, size, mtime_ns, sha256, deleted) FROM STDIN") as cp:
                    for f, path, d, i, seq, kind, size, mtime, sha, deleted, _ in rows:
                        cp.write_row((space, f, path, h.sha256(path.encode()).digest(), seq, d, i, kind, size,
                                      mtime, sha, deleted))
            times.append(time.perf_counter() - t)
    return times


def _isolated_push(cfg_path: Path, n: int) -> dict:
    """In-process: scan, upload the contents, then time the engine's push phase alone."""
    from shoal.app import LocalDevice
    from shoal.config import load_config
    from shoal.model import CONTENT_KINDS
    from shoal.sync.engine import FolderReport, SyncEngine
    from shoal.sync.transfer import UploadStats, upload_contents

    device = LocalDevice(load_config(cfg_path))
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
            files = [c for c in rows if c.kind in CONTENT_KINDS]
            t = time.perf_counter()
            ok = upload_contents(hub, ((c.sha256, str(f.path / c.path), c.size) for c in files), UploadStats())
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
            if fr.pushed != len(rows):  # the files and their directories (entries of their own)
                raise RuntimeError(f"pushed {fr.pushed} rows, expected {len(rows)}")
        finally:
            hub.close()
    finally:
        device.close()
    return {"scan_s": t_scan, "upload_s": t_upload, "push_s": t_push, "hub_push_s": in_hub[0],
            "hub_push_calls": calls[0], "pushed": len(rows)}


def measure(sc: Scale) -> list[Row]:
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
        log(f"{label}: COPY into a hub's changelog and heads")
        hub_copy_t = _copy_into_hub_tables(server, n, sc.repeats)
        hub_copy_rate = n / statistics.median(hub_copy_t)

        # 1. the engine's push phase alone, contents already on the hub (device P, hub db 1)
        log(f"{label}: isolated push phase")
        hub1 = create_db(server, "hub_iso")
        cfg1 = write_config(base / "iso.yaml", name="iso", state=base / "state-iso", hub=hub1, folder=root)
        iso = _isolated_push(cfg1, n)
        push_rate = iso["pushed"] / iso["push_s"]
        hub_rate = iso["pushed"] / iso["hub_push_s"]

        # 2. the whole `shoal sync --now` of a fresh device against an empty hub (device Q, hub db 2)
        log(f"{label}: full `shoal sync --now`")
        hub2 = create_db(server, "hub_full")
        cfg2 = write_config(base / "full.yaml", name="full", state=base / "state-full", hub=hub2, folder=root)
        full = check(run_child(shoal_cmd() + ["sync", "--now"], child_env(cfg2)), "shoal sync --now")
        if f"{iso['pushed']} pushed" not in full.stdout:
            raise RuntimeError(f"sync --now did not push {iso['pushed']}: {full.stdout}")
    ratio = push_rate / copy_rate
    return [
        Row(label, "push_phase", push_rate, "rows/s", copy_rate, "COPY", ratio, ">= 0.5x COPY rows/s",
            ratio >= 0.5,
            f"engine push phase alone ({iso['push_s']:.1f}s for {iso['pushed']} rows ({n} files and their directories), contents pre-uploaded in "
            f"{iso['upload_s']:.1f}s); of it {iso['hub_push_s']:.1f}s inside hub.push "
            f"({iso['hub_push_calls']} calls, {hub_rate:,.0f} rows/s); COPY median of {len(copy_t)}",
            {"rows": n, **iso, "copy_runs": copy_t}),
        Row(label, "hub_push_only", hub_rate, "rows/s", copy_rate, "COPY", hub_rate / copy_rate, "",
            None, "time inside hub.push() calls only (the columns dumped as binary arrays + shoal.push() on the hub)"),
        Row(label, "push_vs_hub_tables", push_rate, "rows/s", hub_copy_rate, "COPY into hub tables",
            push_rate / hub_copy_rate, "", None,
            "the machine's limit for storing these rows as the hub keeps them: COPY straight into a fresh hub's "
            f"changelog and heads with their indexes and checks, as the owner (median of {len(hub_copy_t)}); "
            f"hub.push alone: {hub_rate / hub_copy_rate:.2f}x of it", {"copy_hub_runs": hub_copy_t}),
        Row(label, "sync_now_total", n / full.seconds, "rows/s", copy_rate, "COPY", (n / full.seconds) / copy_rate,
            "", None, f"`shoal sync --now` of a fresh device, empty hub: {full.seconds:.1f}s wall, "
            f"{full.cpu_user + full.cpu_sys:.1f}s CPU (scan + upload + push + pull + process start)",
            {"seconds": full.seconds, "cpu_s": full.cpu_user + full.cpu_sys}),
    ]
