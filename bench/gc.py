"""gc: `shoal hub gc` on a hub holding 1,000,000 changes (100,000 with `--quick`): its time, the
peak memory of the PostgreSQL server and of the `shoal` process, and whether any table or index
was rewritten (a new relfilenode: VACUUM FULL, CLUSTER, a table rebuilt by CREATE TABLE AS...).
Target (issue 12): under a minute, no full-table rewrite.

The hub is a throwaway database on a private PostgreSQL, made a hub by `shoal hub init --url`,
then filled as the owner with SQL (generate_series; indexes dropped during the load and built
again after it, then VACUUM ANALYZE and CHECKPOINT, as on a hub that has been running): one
device's history over the last 90 days in 4 folders, ~200,000 paths with 1 to 9 versions each
(5 on average), every tenth path deleted at the end, a content per version (one block of ~150
bytes; for every fifth path two blocks, the first shared by all versions of the path), two other
devices of the space that have pulled everything. Then, each as a new `shoal hub gc` process
(timed with its own rusage): a dry run, the run (`--keep 30d`, the default: about two thirds of
the superseded versions and of the deletions are older than that), and a second run with
nothing left to collect (the daily cost afterwards). The server's memory is sampled every 50 ms
during the run from /proc (RssAnon: private memory such as sorts and hashes, of every server
process; shared buffers are not counted); `shoal hub stats` before and after checks the counts.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

from bench.fixtures import create_db, postgres, workdir
from bench.processes import check, child_env, proc_status_kb, process_tree, run_child, shoal_cmd
from bench.report import Row, log
from bench.scale import Scale

FOLDERS = 4
DAYS = 90
TABLES = ("changes", "heads", "contents", "block_spaces", "blocks")


class MemorySampler:
    """Peak RssAnon of a process tree (the PostgreSQL server), summed and of its largest process."""

    def __init__(self, root_pid: int, interval: float = 0.05):
        self.root_pid, self.interval = root_pid, interval
        self.peak_total_kb = self.peak_one_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            sizes = [proc_status_kb(p, "RssAnon") for p in process_tree(self.root_pid)]
            self.peak_total_kb = max(self.peak_total_kb, sum(sizes))
            self.peak_one_kb = max(self.peak_one_kb, max(sizes, default=0))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _drop_indexes(conn) -> list[str]:
    """Drop the indexes and unique constraints of the big tables; returns the statements that
    make them again."""
    again = []
    for table in TABLES:
        for name, definition, constraint in conn.execute(
                "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), c.conname"
                " FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.contype IN ('p', 'u')"
                " WHERE i.indrelid = %s::regclass", (f"shoal.{table}",)).fetchall():
            if constraint:
                cdef = conn.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = %s"
                                    " AND conrelid = %s::regclass", (constraint, f"shoal.{table}")).fetchone()[0]
                conn.execute(f'ALTER TABLE shoal.{table} DROP CONSTRAINT "{constraint}"')
                again.append(f'ALTER TABLE shoal.{table} ADD CONSTRAINT "{constraint}" {cdef}')
            else:
                conn.execute(f"DROP INDEX {name}")
                again.append(definition)
    return again


def generate(uri: str, n_changes: int) -> dict:
    """Fill the hub at `uri` (as its owner) with about `n_changes` changes; returns what it made."""
    import psycopg

    paths = max(n_changes // 5, 10)
    device, incarnation = str(uuid.uuid4()), str(uuid.uuid4())
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '256MB'")
        again = _drop_indexes(conn)
        with conn.transaction():
            conn.execute("SELECT set_config('shoal.space', 'default', true)")
            conn.execute("INSERT INTO shoal.devices(device_id, space, name, role_name) VALUES"
                         " (%s, 'default', 'bench-a', current_user), (gen_random_uuid(), 'default', 'bench-b', current_user),"
                         " (gen_random_uuid(), 'default', 'bench-c', current_user)", (device,))
            # (path i, version j): the versions of a path in time order (t: uniform in [0, 1)),
            # paths interleaved in time; the last version of every tenth path is its deletion
            conn.execute(
                "CREATE TEMP TABLE ch ON COMMIT DROP AS"
                " SELECT x.*, encode(sha256(x.data), 'hex') AS sha, encode(sha256(x.head), 'hex') AS head_sha,"
                "        encode(sha256(coalesce(x.head, '') || x.data), 'hex') AS content"
                " FROM (SELECT i, j, t, 'f' || (i %% %s) AS folder_id,"
                "              format('dir%%s/sub%%s/file%%s.txt', i %% 1000, i %% 7, i) AS path,"
                "              (i %% 10 = 0 AND j = nv) AS deleted,"
                "              convert_to(format('%%s/%%s ', i, j) || repeat('x', ((i * 31 + j * 17) %% 300)::int),"
                "                         'UTF8') AS data,"
                "              CASE WHEN i %% 5 = 1 THEN convert_to('shared head of ' || i || repeat('y', 100), 'UTF8')"
                "              END AS head"
                "       FROM (SELECT i, t, row_number() OVER (PARTITION BY i ORDER BY t) AS j,"
                "                    count(*) OVER (PARTITION BY i) AS nv"
                "             FROM (SELECT i, random() AS t FROM generate_series(1, %s) i,"
                "                   LATERAL generate_series(1, 1 + (i * 7919) %% 9) k) r) v) x",
                (FOLDERS, paths))
            conn.execute("INSERT INTO shoal.blocks(sha256, data) SELECT sha, data FROM ch WHERE NOT deleted"
                         " UNION SELECT head_sha, head FROM ch WHERE head IS NOT NULL AND NOT deleted")
            conn.execute("INSERT INTO shoal.block_spaces(space, sha256, added_at)"
                         " SELECT 'default', sha256, now() - make_interval(days => %s) FROM shoal.blocks", (DAYS,))
            conn.execute(
                "INSERT INTO shoal.contents(space, sha256, size, block_size, blocks, added_at)"
                " SELECT 'default', content, octet_length(data) + coalesce(octet_length(head), 0), 131072,"
                "        CASE WHEN head IS NULL THEN ARRAY[sha] ELSE ARRAY[head_sha, sha] END,"
                "        now() - make_interval(days => %s) * (1 - t) FROM ch WHERE NOT deleted", (DAYS,))
            # ids in time order; created_at spread over the last DAYS days
            conn.execute(
                "INSERT INTO shoal.changes(space, folder_id, path, path_hash, device_id, incarnation, seq, kind, size,"
                "                          mtime_ns, sha256, deleted, payload_md5, created_at)"
                " SELECT 'default', folder_id, path, sha256(convert_to(path, 'UTF8')), %s, %s,"
                "        row_number() OVER (ORDER BY t), 'file',"
                "        CASE WHEN deleted THEN 0 ELSE octet_length(data) + coalesce(octet_length(head), 0) END,"
                "        1700000000000000000 + j,"
                "        CASE WHEN deleted THEN encode(sha256(''::bytea), 'hex') ELSE content END, deleted,"
                "        md5(i || '/' || j), now() - make_interval(days => %s) * (1 - t)"
                " FROM ch ORDER BY t", (device, incarnation, DAYS))
            conn.execute(
                "INSERT INTO shoal.heads(space, folder_id, path, path_hash, version, device_id, incarnation, kind, size,"
                "                        mtime_ns, sha256, deleted)"
                " SELECT DISTINCT ON (folder_id, path_hash) space, folder_id, path, path_hash, id, device_id,"
                "        incarnation, kind, size, mtime_ns, sha256, deleted"
                " FROM shoal.changes ORDER BY folder_id, path_hash, id DESC")
            conn.execute("INSERT INTO shoal.folders(space, folder_id)"
                         " SELECT DISTINCT 'default', folder_id FROM shoal.changes ON CONFLICT DO NOTHING")
            conn.execute("INSERT INTO shoal.device_folders(space, folder_id, device_id, cursor, last_pull_at)"
                         " SELECT 'default', f.folder_id, d.device_id, (SELECT max(id) FROM shoal.changes), now()"
                         " FROM shoal.folders f, shoal.devices d WHERE d.name IN ('bench-b', 'bench-c')")
            conn.execute(
                "INSERT INTO shoal.space_usage(space, changes, bytes)"
                " SELECT 'default', (SELECT count(*) FROM shoal.changes),"
                "        (SELECT sum(octet_length(data)) FROM shoal.blocks)"
                " ON CONFLICT (space) DO UPDATE SET changes = excluded.changes, bytes = excluded.bytes")
        for statement in again:
            conn.execute(statement)
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
        made = conn.execute("SELECT (SELECT count(*) FROM shoal.changes), (SELECT count(*) FROM shoal.heads),"
                            " (SELECT count(*) FROM shoal.contents), (SELECT count(*) FROM shoal.blocks),"
                            " pg_database_size(current_database())").fetchone()
    return dict(zip(("changes", "heads", "contents", "blocks", "db_bytes"), made))


def relfilenodes(uri: str) -> dict[str, int]:
    """relation -> its file node, for every table and index of schema shoal."""
    import psycopg

    with psycopg.connect(uri, autocommit=True) as conn:
        return dict(conn.execute("SELECT c.oid::regclass::text, c.relfilenode FROM pg_class c"
                                 " WHERE c.relnamespace = 'shoal'::regnamespace AND c.relkind IN ('r', 'i', 't')"
                                 "    OR c.oid IN (SELECT reltoastrelid FROM pg_class"
                                 "                 WHERE relnamespace = 'shoal'::regnamespace)").fetchall())


def _shoal_json(args: list[str], what: str):
    run = check(run_child(shoal_cmd() + args, env=child_env()), what)
    return run, json.loads(run.stdout)


def measure(sc: Scale) -> list[Row]:
    n = 100_000 if sc.quick else 1_000_000
    label = f"gc_{n // 1000}k" if n < 1_000_000 else "gc_1m"
    with workdir("gc") as base, postgres(base) as server:
        uri = create_db(server, "gchub")
        check(run_child(shoal_cmd() + ["hub", "init", "--url", uri], env=child_env()), "shoal hub init")
        log(f"{label}: generating about {n:,} changes")
        t = time.monotonic()
        made = generate(uri, n)
        log(f"{label}: {made['changes']:,} changes, {made['heads']:,} heads, {made['contents']:,} contents, "
            f"{made['blocks']:,} blocks, database {made['db_bytes'] / 1e6:.0f} MB, in {time.monotonic() - t:.0f} s")
        _, stats_before = _shoal_json(["hub", "stats", "--url", uri, "--json"], "shoal hub stats")
        nodes_before = relfilenodes(uri)
        gc_args = ["hub", "gc", "--url", uri, "--keep", "30d", "--json"]
        dry, dry_report = _shoal_json(gc_args + ["--dry-run"], "shoal hub gc --dry-run")
        log(f"{label}: dry run {dry.seconds:.1f} s")
        with MemorySampler(server.get_pid()) as mem:
            run, report = _shoal_json(gc_args, "shoal hub gc")
        log(f"{label}: gc {run.seconds:.1f} s: {report['changes']:,} changes, {report['contents']:,} contents, "
            f"{report['blocks']:,} blocks, {report['bytes'] / 1e6:.0f} MB; server peak RssAnon "
            f"{mem.peak_total_kb / 1024:.0f} MB (largest process {mem.peak_one_kb / 1024:.0f} MB), "
            f"client {run.maxrss_kb / 1024:.0f} MB")
        again, again_report = _shoal_json(gc_args, "shoal hub gc (again)")
        _, stats_after = _shoal_json(["hub", "stats", "--url", uri, "--json"], "shoal hub stats")
        nodes_after = relfilenodes(uri)
    rewritten = sorted(r for r in nodes_before if nodes_after.get(r) != nodes_before[r])
    versions = [sum(f["versions"] for f in s["folders"]) for s in (stats_before["spaces"][0], stats_after["spaces"][0])]
    # Each run starts later: a few more versions (~8 a minute here) have passed the 30 days by then.
    drift = max(100, n // 1000)
    consistent = (versions[0] - versions[1] == report["changes"] + again_report["changes"]
                  and all(0 <= report[k] - dry_report[k] <= drift for k in ("changes", "contents", "blocks"))
                  and again_report["changes"] <= drift and again_report["blocks"] <= drift
                  and not report["skipped"] and report["repaired"] == 0)
    details = {"made": made, "report": {k: v for k, v in report.items() if k != "folders"},
               "dry_report": {k: v for k, v in dry_report.items() if k != "folders"},
               "second_report": {k: v for k, v in again_report.items() if k != "folders"},
               "dry_run_s": dry.seconds, "second_run_s": again.seconds, "client_maxrss_kb": run.maxrss_kb,
               "client_cpu_s": run.cpu_user + run.cpu_sys, "server_peak_rss_anon_kb": mem.peak_total_kb,
               "server_peak_rss_anon_one_process_kb": mem.peak_one_kb, "rewritten": rewritten,
               "stats_before": stats_before["spaces"][0], "stats_after": stats_after["spaces"][0],
               "checks_ok": consistent}
    note = (f"{made['changes']:,} changes: {report['changes']:,} collected ({report['tombstones']:,} deleted files), "
            f"{report['contents']:,} contents, {report['blocks']:,} blocks ({report['bytes'] / 1e6:.0f} MB); "
            f"dry run {dry.seconds:.1f} s, a second run {again.seconds:.1f} s"
            + ("" if consistent else "; CHECK FAILED: counts differ between dry run, run and stats (see JSON)"))
    return [
        Row(label, "time", run.seconds, "s", target="< 60 s", ok=run.seconds < 60 and consistent, note=note,
            details=details),
        Row(label, "server peak RssAnon", mem.peak_total_kb / 1024, "MB", ok=None,
            note=f"largest process {mem.peak_one_kb / 1024:.0f} MB; shared buffers not counted"),
        Row(label, "client peak RSS", run.maxrss_kb / 1024, "MB", ok=None),
        Row(label, "tables rewritten", len(rewritten), "", target="0", ok=not rewritten,
            note=", ".join(rewritten)[:300]),
    ]
