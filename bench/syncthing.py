"""The baseline of sync_100k: Syncthing (Debian package) between two local instances inside
`unshare -n` (loopback only), on files made as shoal's are, timed from starting both until B
has every file. The worker runs in that namespace as `run.py --syncthing-worker BASE N`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.fixtures import count_files, make_small_files, workdir
from bench.processes import child_env, cpu_seconds, process_tree, run_child
from bench.report import log


RUNNER = Path(__file__).resolve().parent / "run.py"  # its main() dispatches --syncthing-worker


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
               sys.executable, str(RUNNER), "--syncthing-worker", str(base), str(n)]
        log("syncthing: two instances, A -> B, inside `unshare -n`")
        r = run_child(cmd, child_env())
        if r.returncode != 0:
            raise RuntimeError(f"syncthing worker failed: {r.stderr.strip()[-1500:]}")
        got = json.loads(r.stdout.strip().splitlines()[-1])
        if count_files(base / "b" / "folder") != n + 0:
            raise RuntimeError("Syncthing's B does not have every file")
        log(f"syncthing: {got['seconds']:.1f}s")
        return got
