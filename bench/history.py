"""history: `shoal log` of a path with 10,000 versions on a hub holding 200,000 other changes
(issue 12; target: under 100 ms for the hub call). Baseline: the same rows read by a plain
SELECT through psycopg (what the machine can do). For information: `shoal log` as a process.
"""

from __future__ import annotations

import statistics
import time

from bench.fixtures import create_db, postgres, workdir, write_config
from bench.processes import check, child_env, run_child, shoal_cmd
from bench.report import Row, log
from bench.scale import Scale

VERSIONS = 10_000


def measure(sc: Scale) -> list[Row]:
    import psycopg

    from shoal.app import LocalDevice
    from shoal.config import load_config
    from shoal.sync.engine import SyncEngine
    from shoal.sync.history import History

    others = 20_000 if sc.quick else 200_000
    with workdir("history") as base, postgres(base) as server:
        folder = base / "folder"
        folder.mkdir()
        (folder / "p.txt").write_text("the first version")
        hub = create_db(server, "hub_history")
        cfg = write_config(base / "config.yaml", name="laptop", state=base / "state", hub=hub, folder=folder)
        check(run_child(shoal_cmd() + ["sync", "--now"], child_env(cfg)), "shoal sync --now")
        log(f"history: inserting {VERSIONS} versions of one path and {others} other changes")
        with psycopg.connect(hub, autocommit=True) as conn:
            device = conn.execute("SELECT device_id FROM shoal.devices LIMIT 1").fetchone()[0]
            conn.execute(
                "INSERT INTO shoal.changes(space, folder_id, path, path_hash, device_id, incarnation, seq, kind, size,"
                " mtime_ns, sha256, deleted, payload_md5, created_at)"
                " SELECT 'default', 'f', CASE WHEN g <= %s THEN 'p.txt' ELSE 'd' || (g %% 1000) || '/f' || g || '.txt' END,"
                " sha256(convert_to(CASE WHEN g <= %s THEN 'p.txt' ELSE 'd' || (g %% 1000) || '/f' || g || '.txt' END,"
                " 'UTF8')), %s, gen_random_uuid(), g, 'file', 10, g, encode(sha256(convert_to(g::text, 'UTF8')), 'hex'),"
                " false, 'bench', now() - (%s - g) * interval '1 second'"
                " FROM generate_series(1, %s) AS g",
                (VERSIONS, VERSIONS, device, VERSIONS + others, VERSIONS + others))
            conn.execute("ANALYZE shoal.changes")
            raw = []
            for _ in range(5):
                t = time.perf_counter()
                rows = conn.execute("SELECT * FROM shoal.changes WHERE folder_id = 'f' AND path = 'p.txt'"
                                    " ORDER BY id DESC").fetchall()
                raw.append(time.perf_counter() - t)
            assert len(rows) >= VERSIONS
        dev = LocalDevice(load_config(cfg))
        try:
            history = History(SyncEngine(dev.config, dev.store, dev.open_hub))
            whole = []  # History.log: connect, register, read
            for _ in range(3):
                t = time.perf_counter()
                history.log(None, "p.txt", VERSIONS)
                whole.append(time.perf_counter() - t)
            hub_conn = dev.open_hub()
            try:
                calls = []  # the hub call alone, on an open connection
                for _ in range(5):
                    t = time.perf_counter()
                    got = hub_conn.history("f", "p.txt", VERSIONS)
                    calls.append(time.perf_counter() - t)
            finally:
                hub_conn.close()
            assert len(got) == VERSIONS, len(got)
        finally:
            dev.close()
        t = time.perf_counter()
        proc = check(run_child(shoal_cmd() + ["log", "p.txt", "--json", "--limit", str(VERSIONS)], child_env(cfg)),
                     "shoal log")
        cli_s = time.perf_counter() - t
        assert proc.stdout.count('"version"') == VERSIONS
    call_ms, raw_ms = statistics.median(calls) * 1000, statistics.median(raw) * 1000
    return [Row("history", "log_10k_versions", call_ms, "ms", raw_ms, "plain SELECT", call_ms / raw_ms,
                "< 100 ms", call_ms < 100,
                f"the hub call for one path with {VERSIONS} versions among {others} other changes, rows "
                f"decoded, median of 5; with connecting: {statistics.median(whole) * 1000:.0f} ms; the whole "
                f"`shoal log --json` process: {cli_s:.2f} s",
                {"calls_s": calls, "whole_s": whole, "raw_s": raw, "cli_s": cli_s, "others": others})]
