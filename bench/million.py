"""million: a folder of 1,000,000 small files (`--quick`: 100,000), against the same steps on a
tenth of it in the same run, as a user runs them (each step a new `shoal` process): A's first
index (`shoal scan`), a no-change rescan, A's first `shoal sync --now` (upload, push) and B's
(pull, fetch, write, index); the peak RSS of each, the hub's size on disk, and nothing left
pending on either side afterwards (`shoal status --json`: nothing waiting, no errors).
Target (issue 14 item 7): each time grows linearly or better from the small run (ratio
t_big / (10 x t_small) <= 1.1: linear within this machine's noise), memory stays flat (<= 100 MB,
and within 20 MB of the small run), nothing pending.
"""

from __future__ import annotations

import json

from bench.fixtures import count_files, create_db, make_small_files, postgres, workdir, write_config
from bench.processes import ChildRun, check, child_env, run_child, shoal_cmd
from bench.report import Row, log
from bench.scale import Scale

STEPS = ("first_index", "rescan", "A_sync", "B_sync")


def _one_size(server, base, n: int) -> dict:
    """Every step on n files: {step: ChildRun}, plus the hub's size and what is left pending."""
    label = f"{n // 1000}k"
    hub = create_db(server, f"hub{label}")
    a_root, b_root = base / label / "a", base / label / "b"
    a_root.mkdir(parents=True)
    b_root.mkdir(parents=True)
    log(f"million: creating {n} files on A")
    make_small_files(a_root, n)
    cfg_a = write_config(base / f"a{label}.yaml", name="a", state=base / label / "a-state", hub=hub, folder=a_root)
    cfg_b = write_config(base / f"b{label}.yaml", name="b", state=base / label / "b-state", hub=hub, folder=b_root)
    runs: dict[str, ChildRun] = {}
    for step, cfg, args in (("first_index", cfg_a, ["scan"]), ("rescan", cfg_a, ["scan"]),
                            ("A_sync", cfg_a, ["sync", "--now"]), ("B_sync", cfg_b, ["sync", "--now"])):
        runs[step] = check(run_child(shoal_cmd() + args, child_env(cfg)), f"{label} {step}")
        log(f"million: {label} {step}: {runs[step].seconds:.1f}s, peak RSS {runs[step].maxrss_kb / 1024:.0f} MB")
    if f"{n} added" not in runs["first_index"].stdout:
        raise RuntimeError(f"first index did not add {n} files: {runs['first_index'].stdout}")
    if "0 added, 0 modified, 0 deleted" not in runs["rescan"].stdout:
        raise RuntimeError(f"the rescan found changes: {runs['rescan'].stdout}")
    got = count_files(b_root)
    if got != n:
        raise RuntimeError(f"B has {got} files, expected {n}")
    pending = {}
    for who, cfg in (("A", cfg_a), ("B", cfg_b)):
        st = json.loads(check(run_child(shoal_cmd() + ["status", "--json"], child_env(cfg)), "status").stdout)
        pending[who] = sum(f["waiting"] + len(f["errors"]) for f in st["folders"])
    import psycopg

    with psycopg.connect(hub) as conn:
        hub_bytes = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return {"runs": runs, "pending": pending, "hub_mb": hub_bytes / 1e6}


def measure(sc: Scale) -> list[Row]:
    big = 100_000 if sc.quick else 1_000_000
    small = big // 10
    name = f"million_{big // 1000}k" if sc.quick else "million"
    with workdir("million") as base, postgres(base) as server:
        got = {n: _one_size(server, base, n) for n in (small, big)}
    s, b = got[small], got[big]
    rows = []
    for step in STEPS:
        t_small, t_big = s["runs"][step].seconds, b["runs"][step].seconds
        ratio = t_big / (10 * t_small)
        rows.append(Row(name, step, t_big, "s", 10 * t_small, f"10 x {small:,} files", ratio, "<= 1.1x (linear)",
                        ratio <= 1.1, f"wall time; {small:,} files: {t_small:.2f}s", {"small_s": t_small, "big_s": t_big}))
        # CPU seconds of the `shoal` process: what the load of other processes changes least
        c_small, c_big = _cpu(s["runs"][step]), _cpu(b["runs"][step])
        ratio = c_big / (10 * c_small)
        rows.append(Row(name, f"{step}_cpu", c_big, "s", 10 * c_small, f"10 x {small:,} files", ratio,
                        "<= 1.1x (linear)", ratio <= 1.1,
                        f"CPU (user + sys) of the `shoal` process; {small:,} files: {c_small:.2f}s (hub server not counted)"))
    for step in STEPS:
        mb_small, mb_big = s["runs"][step].maxrss_kb / 1024, b["runs"][step].maxrss_kb / 1024
        flat = mb_big <= 100 and mb_big - mb_small <= 20
        rows.append(Row(name, f"{step}_peak_rss", mb_big, "MB", mb_small, f"{small:,} files", mb_big / mb_small,
                        "<= 100 MB, +20 MB at most", flat, "peak RSS of the `shoal` process (VmHWM)"))
    rows.append(Row(name, "hub_size", b["hub_mb"], "MB", s["hub_mb"], f"{small:,} files", b["hub_mb"] / s["hub_mb"],
                    "", None, f"pg_database_size of the hub after A and B synced ({b['hub_mb'] / big * 1e6:.0f} "
                    f"bytes per file)"))
    left = b["pending"]["A"] + b["pending"]["B"]
    rows.append(Row(name, "left_pending", left, "rows", target="0", ok=left == 0,
                    note=f"changes waiting or errors after both syncs (A {b['pending']['A']}, B {b['pending']['B']})"))
    return rows


def _cpu(run: ChildRun) -> float:
    return run.cpu_user + run.cpu_sys
