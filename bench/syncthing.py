"""The Syncthing baseline (Debian package, 1.19): two local instances, A and B, sharing one
folder, local-only (no discovery, relays, NAT, upgrades or usage reports).

`SyncthingPair` runs the two instances from the bench process, each in a network namespace of
the caller's choosing (`slow_link` puts A and B on the two sides of its rate-limited link,
`big_file` both in one private namespace); its REST calls are made from inside that namespace.
`measure_syncthing(n)` is sync_100k's baseline: n small files A -> B inside `unshare -n`
(loopback only), timed from starting both until B has every file; its worker runs in that
namespace as `run.py --syncthing-worker BASE N` and uses a `SyncthingPair` there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.fixtures import count_files, make_small_files, workdir
from bench.processes import child_env, cpu_seconds, process_tree, run_child
from bench.report import log


RUNNER = Path(__file__).resolve().parent / "run.py"  # its main() dispatches --syncthing-worker
FOLDER = "bench"  # the shared folder's id


def available() -> bool:
    return bool(shutil.which("syncthing") and shutil.which("unshare") and shutil.which("ip"))


def _syncthing_config(home: Path, me: str, other: str, other_name: str, gui: str, listen: str,
                      other_address: str, folder: Path, apikey: str, watcher: bool = False,
                      watcher_delay_s: int = 10, reconnect_s: int | None = None) -> None:
    """Local-only Syncthing config: no discovery, relays, NAT, upgrades or usage reports; the
    other device reachable at `other_address` only ("dynamic": never dialled, as discovery is
    off); one folder shared with it. reconnect_s: how soon a failed dial is retried (its
    default is 60 s)."""
    import xml.etree.ElementTree as ET

    path = home / "config.xml"
    tree = ET.parse(path)
    cfg = tree.getroot()
    gui_el = cfg.find("gui")
    gui_el.find("address").text = gui
    gui_el.find("apikey").text = apikey
    opts = cfg.find("options")
    settings = [("listenAddress", listen), ("globalAnnounceEnabled", "false"),
                ("localAnnounceEnabled", "false"), ("relaysEnabled", "false"), ("natEnabled", "false"),
                ("urAccepted", "-1"), ("autoUpgradeIntervalH", "0"), ("crashReportingEnabled", "false"),
                ("startBrowser", "false"), ("setLowPriority", "false")]
    if reconnect_s:
        settings.append(("reconnectionIntervalS", str(reconnect_s)))
    for key, value in settings:
        el = opts.find(key)
        if el is None:
            el = ET.SubElement(opts, key)
        el.text = value
    dev = ET.SubElement(cfg, "device", id=other, name=other_name, compression="metadata", introducer="false")
    ET.SubElement(dev, "address").text = other_address
    fold = ET.Element("folder", id=FOLDER, label=FOLDER, path=str(folder), type="sendreceive",
                      rescanIntervalS="3600", fsWatcherEnabled="true" if watcher else "false",
                      fsWatcherDelayS=str(watcher_delay_s))
    ET.SubElement(fold, "device", id=me)
    ET.SubElement(fold, "device", id=other)
    cfg.insert(0, fold)
    tree.write(path)


class SyncthingPair:
    """Syncthing instances "a" and "b" sharing folder `FOLDER`.

    folders: each instance's folder; listen: the address each listens on (tcp://HOST:PORT);
    reach: the address the *other* instance dials to reach this one (a delaying proxy, say;
    "dynamic": it never dials this one, which then dials it);
    gui: each one's REST address (HOST:PORT); netns: the named network namespace
    (`ip netns`) each runs in, None for the current one. watcher: Syncthing's filesystem watcher
    (off: A's files are found by its first scan, changes by `scan()`). reconnect_s: Syncthing's
    retry interval for a failed dial (default 60 s: a dial before the other listens costs a minute).
    Use as a context manager: the instances are stopped (and their process trees killed) on exit.
    """

    def __init__(self, base: Path, folders: dict[str, Path], *, listen: dict[str, str] | None = None,
                 reach: dict[str, str] | None = None, gui: dict[str, str] | None = None,
                 netns: dict[str, str | None] | None = None, watcher: bool = False, watcher_delay_s: int = 10,
                 reconnect_s: int | None = None):
        self.base = base
        self.folders = folders
        self.listen = listen or {"a": "tcp://127.0.0.1:22001", "b": "tcp://127.0.0.1:22002"}
        self.reach = reach or dict(self.listen)
        self.gui = gui or {"a": "127.0.0.1:18384", "b": "127.0.0.1:18385"}
        self.netns = netns or {"a": None, "b": None}
        self.watcher = watcher
        self.watcher_delay_s = watcher_delay_s
        self.reconnect_s = reconnect_s
        self.procs: dict[str, subprocess.Popen] = {}
        self.started = 0.0
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never an HTTP proxy

    def __enter__(self) -> SyncthingPair:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> float:
        """Make both homes and configs, start both instances; returns the start time (perf_counter)."""
        homes, ids = {}, {}
        for name in ("a", "b"):
            homes[name] = self.base / f"st-{name}"
            (self.folders[name] / ".stfolder").mkdir(parents=True, exist_ok=True)
            subprocess.run(["syncthing", "generate", f"--home={homes[name]}", "--no-default-folder",
                            "--skip-port-probing"], check=True, capture_output=True)
            ids[name] = subprocess.run(["syncthing", "serve", f"--home={homes[name]}", "--device-id"], check=True,
                                       capture_output=True, text=True).stdout.strip()
        for me, other in (("a", "b"), ("b", "a")):
            _syncthing_config(homes[me], ids[me], ids[other], other, self.gui[me], self.listen[me],
                              self.reach[other], self.folders[me], f"bench-{me}", self.watcher,
                              self.watcher_delay_s, self.reconnect_s)
        env = dict(os.environ, STNOUPGRADE="1", STNORESTART="1")
        self.started = time.perf_counter()
        for name in ("a", "b"):
            ns = self.netns[name]
            prefix = ["nsenter", f"--net=/run/netns/{ns}", "--"] if ns else []
            self.procs[name] = subprocess.Popen(prefix + ["syncthing", "serve", f"--home={homes[name]}",
                                                          "--no-browser", "--no-restart", "--no-upgrade"],
                                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self.started

    def rest(self, name: str, path: str, method: str = "GET") -> dict:
        """A REST call to instance `name` (from inside its namespace). Raises OSError."""
        from bench.slow_link import netns

        req = urllib.request.Request(f"http://{self.gui[name]}{path}", method=method,
                                     headers={"X-API-Key": f"bench-{name}"})
        with netns(self.netns[name]):
            with self._opener.open(req, timeout=10) as r:
                body = r.read()
        return json.loads(body) if body.strip() else {}

    def status(self, name: str) -> dict:
        return self.rest(name, f"/rest/db/status?folder={FOLDER}")

    def bytes_total(self, name: str) -> tuple[int, int]:
        """(in, out) bytes over all of the instance's connections so far."""
        total = self.rest(name, "/rest/system/connections")["total"]
        return total["inBytesTotal"], total["outBytesTotal"]

    def scan(self, name: str) -> None:
        self.rest(name, f"/rest/db/scan?folder={FOLDER}", method="POST")

    def wait_b_has(self, files: int, timeout: float, size: int | None = None) -> dict:
        """Until B's folder status says it has `files` files (of `size` bytes, if given), needs
        none and is idle; returns that status. Raises RuntimeError after `timeout` seconds."""
        deadline = time.perf_counter() + timeout
        st: dict = {}
        while time.perf_counter() < deadline:
            self.check_alive()
            try:
                st = self.status("b")
            except OSError:
                st = {}
            if (st.get("localFiles") == files and st.get("needFiles") == 0 and st.get("state") == "idle"
                    and (size is None or st.get("localBytes") == size)):
                return st
            time.sleep(0.2)
        raise RuntimeError(f"Syncthing's B did not have {files} files within {timeout:.0f}s: {st}")

    def wait_connected(self, timeout: float = 60) -> None:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            self.check_alive()
            try:
                conns = self.rest("a", "/rest/system/connections")["connections"]
            except OSError:
                conns = {}
            if any(c.get("connected") for c in conns.values()):
                return
            time.sleep(0.2)
        raise RuntimeError("Syncthing's A and B did not connect")

    def check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"Syncthing {name} exited {p.returncode}")

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of each instance (`syncthing serve` runs the real instance as a child
        of a monitor process: the tree is counted)."""
        return {name: sum(cpu_seconds(pid) for pid in process_tree(p.pid)) for name, p in self.procs.items()}

    def peak_rss_mb(self) -> dict[str, float]:
        """The largest VmHWM (peak RSS) among each instance's processes, in MB (2**20)."""
        out = {}
        for name, p in self.procs.items():
            best = 0
            for pid in process_tree(p.pid):
                try:
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            best = max(best, int(line.split()[1]))
                except OSError:
                    pass
            out[name] = best / 1024
        return out

    def stop(self) -> None:
        trees = {name: process_tree(p.pid) for name, p in self.procs.items() if p.poll() is None}
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for pids in trees.values():  # the monitor's child, should it have outlived the monitor
            for pid in pids:
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass
        self.procs = {}


def syncthing_worker(base: Path, n: int) -> dict:
    """Runs inside `unshare -n` (loopback only): two Syncthing instances, A holding n files,
    B empty; seconds from starting both until B has every file. Prints nothing; returns a dict."""
    folders = {name: base / name / "folder" for name in ("a", "b")}
    with SyncthingPair(base, folders) as pair:
        t0 = pair.start()
        st = pair.wait_b_has(n, 3600)
        seconds = time.perf_counter() - t0
        cpu = pair.cpu()
    return {"seconds": seconds, "cpu_a": cpu["a"], "cpu_b": cpu["b"], "b_status": st}


def measure_syncthing(n: int) -> dict | None:
    """Syncthing (Debian package) between two local instances in a private network namespace,
    on n files made like shoal's; None if syncthing or unshare is not available."""
    if os.environ.get("SHOAL_BENCH_NO_SYNCTHING"):
        return None
    if not available():
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
