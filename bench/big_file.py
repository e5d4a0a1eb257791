"""big_file: one file of random data (1 GiB; `--quick` 256 MiB) synced A -> B through the hub
(A `shoal sync --now`, then B `shoal sync --now`), then a 1 MiB overwrite in its middle (not
block-aligned: it straddles two of a 1 GiB file's 1 MiB blocks) synced again; against Syncthing
1.19 between two local instances on the same data in the same run (issue 14 item 5).

Reported for each step: time (shoal: A + B, process start included; Syncthing: from starting
both instances until B has the file, then from asking A to rescan until B's file has the edit),
and bytes moved (shoal: counted at a relaying proxy between the devices and the hub's Unix
socket, each way, plus the blocks the hub stored new; Syncthing: its REST
`/rest/system/connections` totals). Also the peak RSS of A's and B's `shoal sync --now` of the
whole file (VmHWM, bench.processes.run_child) and, for information, Syncthing's (VmHWM).
Targets: time <= 0.5x Syncthing; the edit moves no more blocks than it touches (2 at 1 GiB);
peak RSS <= 100 MB each. Loopback only: shoal's devices reach the hub at 127.0.0.1 through the
counting proxy; Syncthing runs in a private network namespace with only loopback.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

from bench.fixtures import create_db, postgres, workdir, write_config
from bench.processes import check, child_env, run_child, shoal_cmd
from bench.report import Row, log
from bench.scale import MiB, Scale

EDIT = MiB
EDIT_SKEW = 12_345  # bytes past the middle: the edit is not block-aligned


def _write_random(path: Path, size: int) -> None:
    chunk = 8 * MiB
    with open(path, "wb") as f:
        for off in range(0, size, chunk):
            f.write(os.urandom(min(chunk, size - off)))


def _overwrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _hub_blocks(uri: str) -> int:
    import psycopg

    with psycopg.connect(uri) as conn:
        if conn.execute("SELECT to_regclass('shoal.blocks')").fetchone()[0] is None:
            return 0  # not a hub yet: A's first sync makes it one
        return conn.execute("SELECT count(*) FROM shoal.blocks").fetchone()[0]


def _shoal(base: Path, server, a_file: Path, edit_at: int, edit: bytes) -> dict:
    from bench.slow_link import DelayProxy

    uri = create_db(server, "hub")
    info = server.get_postmaster_info()
    proxy = DelayProxy(str(Path(info.socket_dir) / f".s.PGSQL.{info.port or 5432}"), pump=True)  # counts bytes
    hub = f"postgresql://postgres@127.0.0.1:{proxy.port}/hub"
    roots = {"a": a_file.parent, "b": base / "b" / "folder"}
    roots["b"].mkdir(parents=True)
    cfgs = {who: write_config(base / f"{who}.yaml", name=who, state=base / who / "state", hub=hub, folder=root)
            for who, root in roots.items()}
    out: dict = {}
    try:
        for step in ("first", "edit"):
            if step == "edit":
                _overwrite(a_file, edit_at, edit)
            out[step] = {}
            for who in ("a", "b"):
                blocks0 = _hub_blocks(uri)
                _, up0, down0 = proxy.counters()
                log(f"big_file: shoal {who.upper()} sync --now ({step})")
                run = check(run_child(shoal_cmd() + ["sync", "--now"], child_env(cfgs[who])),
                            f"{who.upper()}: shoal sync --now ({step})")
                _, up1, down1 = proxy.counters()
                out[step][who] = {"seconds": run.seconds, "cpu": run.cpu_user + run.cpu_sys,
                                  "maxrss_mb": run.maxrss_kb / 1024, "bytes_up": up1 - up0,
                                  "bytes_down": down1 - down0, "new_blocks": _hub_blocks(uri) - blocks0}
                log(f"big_file: {who.upper()} {run.seconds:.2f}s, {(up1 - up0) / 1e6:.1f} MB up, "
                    f"{(down1 - down0) / 1e6:.1f} MB down, peak RSS {run.maxrss_kb / 1024:.1f} MB")
            b_file = roots["b"] / a_file.name
            if _digest(b_file) != _digest(a_file):
                raise RuntimeError(f"shoal's B has a different {a_file.name} after the {step} sync")
    finally:
        proxy.close()
    shutil.rmtree(roots["b"], ignore_errors=True)  # room on the disk for Syncthing's copies
    return out


def _syncthing(base: Path, a_file: Path, size: int, edit_at: int, edit: bytes) -> dict:
    from bench.slow_link import private_netns
    from bench.syncthing import SyncthingPair

    b_file = base / "b" / a_file.name
    b_file.parent.mkdir(parents=True)
    out: dict = {}
    with private_netns("big") as ns, SyncthingPair(base, {"a": a_file.parent, "b": b_file.parent},
                                                   netns={"a": ns, "b": ns}) as pair:
        log("big_file: Syncthing A -> B")
        t0 = pair.start()
        pair.wait_b_has(1, 1800, size=size)
        out["first"] = {"seconds": time.perf_counter() - t0, "cpu": pair.cpu(), "b_in": pair.bytes_total("b")[0],
                        "a_out": pair.bytes_total("a")[1], "rss_mb": pair.peak_rss_mb()}
        log(f"big_file: Syncthing {out['first']['seconds']:.2f}s")
        time.sleep(1.0)
        b_in0, a_out0 = pair.bytes_total("b")[0], pair.bytes_total("a")[1]
        cpu0 = pair.cpu()
        _overwrite(a_file, edit_at, edit)
        t1 = time.perf_counter()
        pair.scan("a")
        deadline = t1 + 600
        while True:
            try:
                with open(b_file, "rb") as f:
                    f.seek(edit_at)
                    if f.read(len(edit)) == edit:
                        break
            except FileNotFoundError:  # between Syncthing's steps of replacing it
                pass
            if time.perf_counter() > deadline:
                raise RuntimeError("Syncthing's B did not get the edit within 600s")
            pair.check_alive()
            time.sleep(0.02)
        seconds = time.perf_counter() - t1
        pair.wait_b_has(1, 120, size=size)
        cpu1 = pair.cpu()
        out["edit"] = {"seconds": seconds, "b_in": pair.bytes_total("b")[0] - b_in0,
                       "a_out": pair.bytes_total("a")[1] - a_out0,
                       "cpu": {k: cpu1[k] - cpu0[k] for k in cpu1}}
        log(f"big_file: Syncthing edit {seconds:.2f}s")
    if _digest(b_file) != _digest(a_file):
        raise RuntimeError("Syncthing's B has a different file after the edit")
    return out


def measure(sc: Scale) -> list[Row]:
    from shoal.core.blocks import block_size_for

    from bench.syncthing import available

    size = sc.big_file
    block = block_size_for(size)
    edit_at = size // 2 + EDIT_SKEW
    touched = (edit_at + EDIT - 1) // block - edit_at // block + 1
    edit = os.urandom(EDIT)
    st = None
    st_error = ""
    with workdir("big_file") as base:
        a_file = base / "shoal" / "a" / "folder" / "big.bin"
        st_a_file = base / "st" / "a" / "big.bin"
        a_file.parent.mkdir(parents=True)
        st_a_file.parent.mkdir(parents=True)
        log(f"big_file: writing {size >> 20} MiB of random data (and a copy for Syncthing)")
        _write_random(a_file, size)
        shutil.copyfile(a_file, st_a_file)
        with postgres(base / "shoal") as server:
            sh = _shoal(base / "shoal", server, a_file, edit_at, edit)
        shutil.rmtree(base / "shoal", ignore_errors=True)
        if available() and not os.environ.get("SHOAL_BENCH_NO_SYNCTHING"):
            try:
                st = _syncthing(base / "st", st_a_file, size, edit_at, edit)
            except Exception as e:  # Syncthing's trouble is not shoal's result
                st_error = f"Syncthing measurement failed ({type(e).__name__}: {str(e)[:300]})"
                log(st_error)
        else:
            st_error = "Syncthing not measured (not installed, or --no-syncthing)"
    mib = f"{size >> 20} MiB"
    rows = []
    for step, what in (("first", f"first sync of {mib}"), ("edit", "sync of a 1 MiB edit in the middle")):
        a, b = sh[step]["a"], sh[step]["b"]
        total = a["seconds"] + b["seconds"]
        moved = (f"A {a['seconds']:.2f} s (CPU {a['cpu']:.1f} s, {a['bytes_up'] / 1e6:.2f} MB up, "
                 f"{a['new_blocks']} new blocks in the hub) + B {b['seconds']:.2f} s (CPU {b['cpu']:.1f} s, "
                 f"{b['bytes_down'] / 1e6:.2f} MB down)")
        if st:
            s = st[step]
            ratio = total / s["seconds"]
            rows.append(Row("big_file", f"{step}_time", total, "s", s["seconds"], "Syncthing 1.19, same run", ratio,
                            "<= 0.5x", ratio <= 0.5,
                            f"{moved}; Syncthing: {s['b_in'] / 1e6:.2f} MB into B, {s['a_out'] / 1e6:.2f} MB out "
                            f"of A, CPU A {s['cpu']['a']:.1f} s + B {s['cpu']['b']:.1f} s",
                            {"shoal": sh[step], "syncthing": s}))
        else:
            rows.append(Row("big_file", f"{step}_time", total, "s", target="<= 0.5x Syncthing", ok=None,
                            note=f"{moved}; {st_error}", details={"shoal": sh[step]}))
        down_blocks = b["bytes_down"] / block
        up_blocks = a["bytes_up"] / block
        if step == "edit":
            # wire bytes include the queries and the new version's block list (32-64 bytes a block)
            allowance = touched * block + 256 * 1024
            ok = a["new_blocks"] <= touched and max(a["bytes_up"], b["bytes_down"]) <= allowance
            rows.append(Row("big_file", "edit_blocks", a["new_blocks"], "blocks",
                            st["edit"]["b_in"] / block if st else None, "Syncthing, bytes into B / block" if st else "",
                            None, f"<= {touched} (the blocks the edit touches; bytes <= that + 256 KiB)", ok,
                            f"block size {block >> 10} KiB for a {mib} file; blocks' worth of bytes: A up "
                            f"{up_blocks:.2f}, B down {down_blocks:.2f} (all bytes on the wire, queries included)"))
        rows.append(Row("big_file", f"{step}_bytes_down_B", b["bytes_down"] / 1e6, "MB",
                        st[step]["b_in"] / 1e6 if st else None, "Syncthing into B" if st else "",
                        b["bytes_down"] / st[step]["b_in"] if st and st[step]["b_in"] else None, "", None,
                        f"A sent {a['bytes_up'] / 1e6:.2f} MB to the hub"))
    for who in ("a", "b"):
        mb = sh["first"][who]["maxrss_mb"]
        rows.append(Row("big_file", f"{who.upper()}_peak_rss", mb, "MB",
                        st["first"]["rss_mb"][who] if st else None, "Syncthing (VmHWM)" if st else "", None,
                        "<= 100 MB", mb <= 100, f"{who.upper()}'s `shoal sync --now` of the {mib} file (VmHWM)"))
    return rows
