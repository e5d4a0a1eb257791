"""index_100k: first index of 100,000 small files, `shoal scan` of a fresh folder (a new process,
a new state dir), against Syncthing's first scan of the same files in the same run: one instance
(Debian package) inside `unshare -n` (loopback only), timed from starting it until its REST API
says the folder is idle with every file in its local index. Target (issue 14 item 3):
ratio <= 0.3.

Syncthing is configured as in sync_100k (local only: no discovery, relays, NAT, upgrades or usage
reports; `setLowPriority` off; no watcher), with the folder shared with no other device. The
worker runs in the namespace as `run.py --syncthing-scan-worker BASE N`.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.fixtures import make_small_files, workdir, write_config
from bench.processes import check, child_env, cpu_seconds, process_tree, run_child, shoal_cmd
from bench.report import Row, log
from bench.scale import Scale
from bench.syncthing import RUNNER

GUI_PORT, PORT = 18394, 22011
API_KEY = "bench-scan"


def _single_config(home: Path, folder: Path) -> None:
    """One local-only instance (as bench/syncthing.py sets up sync_100k's) with one folder."""
    import xml.etree.ElementTree as ET

    path = home / "config.xml"
    tree = ET.parse(path)
    cfg = tree.getroot()
    gui = cfg.find("gui")
    gui.find("address").text = f"127.0.0.1:{GUI_PORT}"
    gui.find("apikey").text = API_KEY
    opts = cfg.find("options")
    for key, value in (("listenAddress", f"tcp://127.0.0.1:{PORT}"), ("globalAnnounceEnabled", "false"),
                       ("localAnnounceEnabled", "false"), ("relaysEnabled", "false"), ("natEnabled", "false"),
                       ("urAccepted", "-1"), ("autoUpgradeIntervalH", "0"), ("crashReportingEnabled", "false"),
                       ("startBrowser", "false"), ("setLowPriority", "false")):
        el = opts.find(key)
        if el is None:
            el = ET.SubElement(opts, key)
        el.text = value
    me = cfg.find("device").get("id")
    fold = ET.Element("folder", id="bench", label="bench", path=str(folder), type="sendreceive",
                      rescanIntervalS="3600", fsWatcherEnabled="false")
    ET.SubElement(fold, "device", id=me)
    cfg.insert(0, fold)
    tree.write(path)


def syncthing_scan_worker(base: Path, n: int) -> dict:
    """Runs inside `unshare -n`: one Syncthing instance whose folder `base/folder` holds n files;
    seconds from starting it until the folder is idle with n files in its local index."""
    import urllib.request

    home = base / "st-home"
    shutil.rmtree(home, ignore_errors=True)
    subprocess.run(["syncthing", "generate", f"--home={home}", "--no-default-folder", "--skip-port-probing"],
                   check=True, capture_output=True)
    _single_config(home, base / "folder")
    env = dict(os.environ, STNOUPGRADE="1", STNORESTART="1")
    req = urllib.request.Request(f"http://127.0.0.1:{GUI_PORT}/rest/db/status?folder=bench",
                                 headers={"X-API-Key": API_KEY})
    st: dict = {}
    t0 = time.perf_counter()
    proc = subprocess.Popen(["syncthing", "serve", f"--home={home}", "--no-browser", "--no-restart",
                             "--no-upgrade"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - t0 < 1800:
            time.sleep(0.05)
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    st = json.loads(r.read())
            except OSError:
                continue
            if st.get("localFiles") == n and st.get("state") == "idle":
                break
        else:
            raise RuntimeError(f"Syncthing did not finish its scan within 30 minutes: {st}")
        seconds = time.perf_counter() - t0
        cpu = sum(cpu_seconds(pid) for pid in process_tree(proc.pid))
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {"seconds": seconds, "cpu": cpu, "status": {k: st.get(k) for k in ("localFiles", "state")}}


def syncthing_scan(base: Path, n: int) -> dict | None:
    """One timed Syncthing first scan of base/folder; None without syncthing, unshare or ip."""
    if not (shutil.which("syncthing") and shutil.which("unshare") and shutil.which("ip")):
        return None
    cmd = ["unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
           sys.executable, str(RUNNER), "--syncthing-scan-worker", str(base), str(n)]
    r = run_child(cmd, child_env())
    if r.returncode != 0:
        raise RuntimeError(f"syncthing scan worker failed: {r.stderr.strip()[-1500:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def measure(sc: Scale) -> list[Row]:
    """First index of n small files: `shoal scan` (new process, fresh store) vs Syncthing's first scan."""
    n = sc.small_files
    name = "index_100k" if n == 100_000 else f"index_{n // 1000}k"
    with workdir("index100k") as base:
        root = base / "folder"
        (root / ".stfolder").mkdir(parents=True)  # Syncthing's folder marker (a directory: not a file)
        log(f"{name}: creating {n} files")
        make_small_files(root, n)
        warm = base / "warm"  # an untimed scan of one file fills the bytecode cache
        (warm / "folder").mkdir(parents=True)
        (warm / "folder" / "a.txt").write_text("a")
        env = child_env(write_config(warm / "config.yaml", name="bench", state=warm / "state", hub="embedded",
                                     folder=warm / "folder"))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(base / "pycache")
        check(run_child(shoal_cmd() + ["scan"], env), "shoal scan (warm-up)")
        shoal_t, shoal_cpu, st_t, st_cpu = [], [], [], []
        for k in range(sc.repeats):  # alternating, so drift on a noisy machine hits both
            state = base / f"state{k}"
            cfg = write_config(base / f"config{k}.yaml", name="bench", state=state, hub="embedded", folder=root)
            env = child_env(cfg)
            env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode cached (see rescan_100k)
            env["PYTHONPYCACHEPREFIX"] = str(base / "pycache")
            shutil.rmtree(root / ".shoal", ignore_errors=True)
            subprocess.run(["sync"], check=False)
            time.sleep(1)
            r = check(run_child(shoal_cmd() + ["scan"], env), "shoal scan (first index)")
            if f"{n} added" not in r.stdout:
                raise RuntimeError(f"first scan did not add {n} files: {r.stdout}")
            shoal_t.append(r.seconds)
            shoal_cpu.append(r.cpu_user + r.cpu_sys)
            shutil.rmtree(state)
            shutil.rmtree(root / ".shoal")  # not Syncthing's to count
            subprocess.run(["sync"], check=False)
            time.sleep(1)
            got = syncthing_scan(base, n)
            if got is None:
                break
            st_t.append(got["seconds"])
            st_cpu.append(got["cpu"])
            log(f"{name}: round {k + 1}: shoal scan {shoal_t[-1]:.2f}s ({shoal_cpu[-1]:.1f}s CPU), "
                f"Syncthing {st_t[-1]:.2f}s ({st_cpu[-1]:.1f}s CPU)")
    m = statistics.median(shoal_t)
    details = {"files": n, "shoal_runs": shoal_t, "shoal_cpu": shoal_cpu, "syncthing_runs": st_t,
               "syncthing_cpu": st_cpu}
    if not st_t:
        return [Row(name, "", m, "s", None, "", None, "<= 0.3x Syncthing", None,
                    "Syncthing (or unshare, ip) not installed: no baseline", details)]
    b = statistics.median(st_t)
    ratio = m / b
    return [Row(name, "", m, "s", b, "Syncthing first scan", ratio, "<= 0.3x", ratio <= 0.3,
                f"{n} small files, fresh state each run, process start included, median of {len(shoal_t)}; "
                f"CPU median shoal {statistics.median(shoal_cpu):.1f}s, Syncthing {statistics.median(st_cpu):.1f}s",
                details)]
