"""sync_100k: device A `shoal sync --now` (scan, upload, push) then device B `shoal sync --now`
(pull, fetch, write, index) of 100,000 small files, against Syncthing 1.19 between two local
instances measured in the same run (bench/syncthing.py), or DESIGN.md's quoted figure when
syncthing is not installed or `--no-syncthing` is given. Target: total <= 0.25x Syncthing.
"""

from __future__ import annotations

from bench.fixtures import count_files, create_db, make_small_files, postgres, workdir, write_config
from bench.processes import check, child_env, run_child, shoal_cmd
from bench.report import Row, log
from bench.scale import Scale
from bench.syncthing import measure_syncthing


SYNCTHING_SECONDS = 167.0  # DESIGN.md: Syncthing 1.19, 100,000 small files between two local instances


def measure(sc: Scale) -> list[Row]:
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
    # Issue 14 item 6: memory while syncing (peak RSS of each `shoal sync --now`: its VmHWM).
    for who, run in (("A", ra), ("B", rb)):
        mb = run.maxrss_kb / 1024
        rows.append(Row(label, f"{who}_peak_rss", mb, "MB", target="<= 100 MB", ok=mb <= 100,
                        note=f"{who}'s `shoal sync --now`, peak RSS (VmHWM)"))
    return rows
