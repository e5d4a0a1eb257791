"""slow_link: the hub behind a link of 40 ms round trip and 20 Mbit/s, against Syncthing across
the same link in the same run (issue 14 item 4).

The link (this kernel has no netem): two network namespaces, "hub" and "dev", joined by a veth
pair whose two ends each send at most 20 Mbit/s (`tc qdisc ... tbf`), plus a proxy that holds
every chunk 20 ms in each direction (`DelayProxy`). shoal's devices run as usual (the bench's
namespace) and reach the hub through 127.0.0.1:P -> delay proxy -> (a socket in "dev") -> veth
-> a relay in "hub" -> the PostgreSQL server's Unix socket. Syncthing's A runs in "dev", B in
"hub", and each dials the other through a delaying proxy in "hub", so their traffic crosses the
veth once and is delayed 20 ms each way. Nothing is routed outside the two namespaces.

Measured:
1. round trips: a no-change `shoal sync --now`, pushing one edit, pulling it on another device
   (median of 9 each), with the proxy delaying and not delaying (same link otherwise); the proxy
   counts round trips (an answer after a request), connection setup included;
2. first sync of `link_files` small files (10,000; `--quick` 2,000): A `shoal sync --now` then
   B `shoal sync --now` (on a hub made by `shoal hub init` across the link first, timed apart),
   against Syncthing from starting both instances until B has every file; target <= 0.5x;
3. latency, a file saved on A until B has it: two `shoal run` daemons with the default config
   (debounce 1s), against Syncthing with its watcher on (fsWatcherDelayS 1, its quickest; the
   default is 10); target p50 <= 0.5 s + 3 round trips (0.62 s). The same daemons are sampled
   first with the proxy not delaying, to show what the round trips add.
The link's own limit (the files' bytes at 20 Mbit/s) and a check of the link (throughput each
way, a round trip through the proxy) are reported too.
"""

from __future__ import annotations

import contextlib
import ctypes
import heapq
import os
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.fixtures import count_files, create_db, make_small_files, postgres, workdir, write_config
from bench.processes import check, child_env, run_child, shoal_cmd
from bench.report import Row, log
from bench.scale import Scale

ONE_WAY = 0.020  # seconds each chunk is held in each direction: a 40 ms round trip
RATE_BITS = 20_000_000  # the link's bandwidth, each direction
RUNS = 9
LATENCY_TARGET = 0.5 + 3 * 2 * ONE_WAY  # DESIGN: 0.5 s plus 3 round trips
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def netns(name: str | None):
    """Run the calling thread in the named network namespace (`ip netns`) for the block: sockets
    made inside it belong to that namespace for good. setns(2) moves one thread only, so the
    bench's other threads are not affected. None: no change."""
    if name is None:
        yield
        return
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
        yield
    finally:
        if _libc.setns(own, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back")  # a thread stuck in the wrong namespace: stop
        os.close(own)
        os.close(target)


def _ip(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


class Link:
    """Two network namespaces, `hub` and `dev`, joined by a veth pair (HUB_IP -- DEV_IP) whose
    ends each send at most `rate` (tc tbf): a link of that bandwidth in each direction. Loopback
    is up in both. Used as a context manager; the namespaces (and the veth) are deleted on exit."""

    HUB_IP, DEV_IP = "10.213.14.1", "10.213.14.2"

    def __init__(self, rate: str = "20mbit"):
        self.hub = f"shoal-bench-hub-{os.getpid()}"
        self.dev = f"shoal-bench-dev-{os.getpid()}"
        self.rate = rate

    def __enter__(self) -> Link:
        veth_h, veth_d = f"sbh{os.getpid()}", f"sbd{os.getpid()}"
        try:
            for ns in (self.hub, self.dev):
                _ip("ip", "netns", "add", ns)
                _ip("ip", "-n", ns, "link", "set", "lo", "up")
            _ip("ip", "link", "add", veth_h, "type", "veth", "peer", "name", veth_d)
            for ns, dev, addr in ((self.hub, veth_h, self.HUB_IP), (self.dev, veth_d, self.DEV_IP)):
                _ip("ip", "link", "set", dev, "netns", ns)
                _ip("ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
                _ip("ip", "-n", ns, "link", "set", dev, "up")
                # a 32 KB bucket (13 ms at 20 Mbit/s); up to 100 ms of queue before drops
                _ip("tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", self.rate,
                    "burst", "32kb", "latency", "100ms")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for ns in (self.hub, self.dev):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


@contextlib.contextmanager
def private_netns(tag: str):
    """A network namespace of its own with only loopback (up); its name. Deleted on exit."""
    name = f"shoal-bench-{tag}-{os.getpid()}"
    try:
        _ip("ip", "netns", "add", name)
        _ip("ip", "-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def unix_upstream(path: str) -> Callable[[], socket.socket]:
    def connect() -> socket.socket:
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        return s
    return connect


def tcp_upstream(host: str, port: int, ns: str | None = None) -> Callable[[], socket.socket]:
    def connect() -> socket.socket:
        with netns(ns):
            s = socket.create_connection((host, port), timeout=10)
        s.settimeout(None)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s
    return connect


class DelayProxy:
    """Forwards host:port (a listener in namespace `ns`) to `upstream()` (a connected socket),
    holding each chunk `delay` seconds in each direction (order kept; `delay` may be changed
    between connections and applies to chunks read after the change). Counts round trips (an
    answer after a request, over all connections) and the bytes each way. `pump`: never delays;
    each direction is one thread copying through a 1 MiB buffer (a cheaper relay for bulk data,
    where the delaying one's queue and thread hand-offs cost CPU)."""

    def __init__(self, upstream: Callable[[], socket.socket] | str, *, host: str = "127.0.0.1",
                 ns: str | None = None, delay: float = 0.0, pump: bool = False):
        self.upstream = unix_upstream(upstream) if isinstance(upstream, str) else upstream
        self.delay = delay
        self.pump = pump
        self.turns = 0
        self.bytes_up = 0  # client -> upstream
        self.bytes_down = 0  # upstream -> client
        self._lock = threading.Lock()
        with netns(ns):
            self.listener = socket.create_server((host, 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def counters(self) -> tuple[int, int, int]:
        """(round trips, bytes up, bytes down) so far."""
        with self._lock:
            return self.turns, self.bytes_up, self.bytes_down

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = self.upstream()
            except OSError:  # the other end is not listening (yet): as a refused connection
                client.close()
                continue
            if client.family != socket.AF_UNIX:
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            last = ["answer"]  # the direction of the connection's last chunk
            if self.pump:
                for src, dst, side in ((client, upstream, "request"), (upstream, client, "answer")):
                    threading.Thread(target=self._pump, args=(src, dst, side, last), daemon=True).start()
                continue
            for src, dst, side in ((client, upstream, "request"), (upstream, client, "answer")):
                queue: list[tuple[float, int, bytes]] = []
                ready = threading.Condition()
                threading.Thread(target=self._read, args=(src, queue, ready, side, last), daemon=True).start()
                threading.Thread(target=self._send, args=(dst, queue, ready), daemon=True).start()

    def _count(self, side: str, n: int, last: list) -> None:
        with self._lock:
            if side == "answer":
                self.bytes_down += n
                if last[0] == "request":
                    self.turns += 1
            else:
                self.bytes_up += n
            last[0] = side

    def _pump(self, src: socket.socket, dst: socket.socket, side: str, last: list) -> None:
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        while True:
            try:
                n = src.recv_into(buf)
            except OSError:
                n = 0
            if not n:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            self._count(side, n, last)
            try:
                dst.sendall(view[:n])
            except OSError:
                return

    def _read(self, src: socket.socket, queue: list, ready: threading.Condition, side: str, last: list) -> None:
        n = 0
        while True:
            try:
                data = src.recv(1 << 16)
            except OSError:
                data = b""
            if data:
                self._count(side, len(data), last)
            with ready:
                heapq.heappush(queue, (time.monotonic() + self.delay, n, data))
                ready.notify()
            n += 1
            if not data:
                return

    def _send(self, dst: socket.socket, queue: list, ready: threading.Condition) -> None:
        while True:
            with ready:
                while not queue:
                    ready.wait()
                due, _, data = queue[0]
                wait = due - time.monotonic()
                if wait > 0:
                    ready.wait(wait)
                    continue
                heapq.heappop(queue)
            try:
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        try:  # wakes the accept thread (a bare close leaves it blocked, the socket listening)
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()


def check_link(link: Link, size: int = 2_500_000) -> dict:
    """The link as built: throughput each way (a bulk transfer across the veth) and the round
    trip of a small message through a delaying proxy (medians of 5)."""
    with netns(link.hub):
        sink = socket.create_server((link.HUB_IP, 0))
    port = sink.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = sink.accept()
            except OSError:
                return
            with conn:
                mode = conn.recv(1)
                if mode == b"u":  # upload: read to EOF, then answer one byte
                    while conn.recv(1 << 16):
                        pass
                    conn.sendall(b"k")
                elif mode == b"d":  # download: send `size` bytes
                    conn.sendall(os.urandom(size))
                else:  # echo one small message at a time
                    while data := conn.recv(4096):
                        conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    connect = tcp_upstream(link.HUB_IP, port, link.dev)
    out = {}
    with connect() as s:
        t = time.perf_counter()
        s.sendall(b"u" + os.urandom(size))
        s.shutdown(socket.SHUT_WR)
        s.recv(1)
        out["up_mbit"] = size * 8 / (time.perf_counter() - t) / 1e6
    with connect() as s:
        t = time.perf_counter()
        s.sendall(b"d")
        got = 0
        while data := s.recv(1 << 16):
            got += len(data)
        out["down_mbit"] = got * 8 / (time.perf_counter() - t) / 1e6
    proxy = DelayProxy(connect, delay=ONE_WAY)
    with socket.create_connection(("127.0.0.1", proxy.port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"e")
        trips = []
        for _ in range(5):
            t = time.perf_counter()
            s.sendall(b"ping")
            s.recv(4096)
            trips.append(time.perf_counter() - t)
        out["rtt_ms"] = statistics.median(trips) * 1000
    proxy.close()
    sink.shutdown(socket.SHUT_RDWR)
    sink.close()
    return out


def _sync(proxy: DelayProxy, cfg: Path, what: str):
    """(the run, round trips, bytes up, bytes down) of one `shoal sync --now`."""
    t0, up0, down0 = proxy.counters()
    run = check(run_child(shoal_cmd() + ["sync", "--now"], child_env(cfg)), what)
    t1, up1, down1 = proxy.counters()
    return run, t1 - t0, up1 - up0, down1 - down0


def _round_trips(base: Path, server, proxy: DelayProxy) -> dict:
    """Part 1: no-change sync, push one edit, pull it; proxy not delaying vs delaying."""
    create_db(server, "hub")
    hub = f"postgresql://postgres@127.0.0.1:{proxy.port}/hub"
    a_root, b_root = base / "rt" / "a" / "folder", base / "rt" / "b" / "folder"
    a_root.mkdir(parents=True)
    b_root.mkdir(parents=True)
    (a_root / "notes.txt").write_text("v0\n")
    cfg_a = write_config(base / "rt" / "a.yaml", name="a", state=base / "rt" / "a" / "state", hub=hub, folder=a_root)
    cfg_b = write_config(base / "rt" / "b.yaml", name="b", state=base / "rt" / "b" / "state", hub=hub, folder=b_root)
    for cfg in (cfg_a, cfg_b, cfg_a, cfg_b):
        check(run_child(shoal_cmd() + ["sync", "--now"], child_env(cfg)), "first syncs")
    figures: dict[str, dict[str, tuple[float, int]]] = {}
    edits = iter(range(1_000_000))
    for label, delay in (("fast", 0.0), ("slow", ONE_WAY)):
        proxy.delay = delay
        runs: dict[str, list[tuple[float, int]]] = {"idle": [], "push": [], "pull": []}
        for _ in range(RUNS):
            for key, cfg, what in (("idle", cfg_a, "no-change sync"), ("push", cfg_a, "push"),
                                   ("pull", cfg_b, "pull")):
                if key == "push":
                    (a_root / "notes.txt").write_text(f"edit {next(edits)}\n")
                run, trips, _, _ = _sync(proxy, cfg, what)
                runs[key].append((run.seconds, trips))
        if (b_root / "notes.txt").read_text() != (a_root / "notes.txt").read_text():
            raise RuntimeError("B did not get A's last edit")
        figures[label] = {k: (statistics.median(s for s, _ in v), int(statistics.median(t for _, t in v)))
                          for k, v in runs.items()}
        log(f"slow_link {label}: " + ", ".join(f"{k} {s:.3f}s ({t} round trips)"
                                               for k, (s, t) in figures[label].items()))
    proxy.delay = ONE_WAY
    return figures


def _shoal_first_sync(base: Path, server, proxy: DelayProxy, n: int) -> dict:
    """Part 2, shoal: A `shoal sync --now` of n new files, then B's, through the slow link."""
    create_db(server, "hub_first")
    hub = f"postgresql://postgres@127.0.0.1:{proxy.port}/hub_first"
    # The hub's schema is installed once, by `shoal hub init` (or the first device): timed apart
    # from the sync, across the same link
    t0, _, _ = proxy.counters()
    init = check(run_child(shoal_cmd() + ["hub", "init", "--url", hub], child_env()), "shoal hub init")
    init_trips = proxy.counters()[0] - t0
    log(f"slow_link: shoal hub init across the link {init.seconds:.2f}s, {init_trips} round trips")
    a_root, b_root = base / "first" / "a" / "folder", base / "first" / "b" / "folder"
    a_root.mkdir(parents=True)
    b_root.mkdir(parents=True)
    data_bytes = make_small_files(a_root, n)
    cfgs = {who: write_config(base / "first" / f"{who}.yaml", name=who, state=base / "first" / who / "state",
                              hub=hub, folder=root) for who, root in (("a", a_root), ("b", b_root))}
    out: dict = {"data_bytes": data_bytes, "init": {"seconds": init.seconds, "round_trips": init_trips}}
    for who in ("a", "b"):
        log(f"slow_link: shoal {who.upper()} sync --now of {n} files across the link")
        run, trips, up, down = _sync(proxy, cfgs[who], f"{who.upper()}: shoal sync --now")
        out[who] = {"seconds": run.seconds, "cpu": run.cpu_user + run.cpu_sys, "round_trips": trips,
                    "bytes_up": up, "bytes_down": down, "maxrss_mb": run.maxrss_kb / 1024}
        log(f"slow_link: {who.upper()} {run.seconds:.2f}s, {trips} round trips, {up} B up, {down} B down")
    got = count_files(b_root)
    if got != n:
        raise RuntimeError(f"shoal's B has {got} files, expected {n}")
    return out


def _syncthing_pair(base: Path, link: Link, name: str, folders: dict[str, Path], proxies: list, **kw):
    """Syncthing A in the link's "dev" namespace, B in "hub"; A dials B through a delaying proxy
    in "hub" (so the connection crosses the veth once, delayed each way). Only A dials: when
    both did, they sometimes closed each other's connections (duplicates) and waited a minute."""
    from bench.syncthing import SyncthingPair

    a_to_b = DelayProxy(tcp_upstream("127.0.0.1", 22002, link.hub), host=link.HUB_IP, ns=link.hub, delay=ONE_WAY)
    proxies.append(a_to_b)
    return SyncthingPair(base / name, folders, listen={"a": f"tcp://{link.DEV_IP}:22001", "b": "tcp://127.0.0.1:22002"},
                         reach={"a": "dynamic", "b": f"tcp://{link.HUB_IP}:{a_to_b.port}"},
                         netns={"a": link.dev, "b": link.hub}, reconnect_s=1, **kw)


def _syncthing_first_sync(base: Path, link: Link, n: int) -> dict:
    a_root, b_root = base / "st-first" / "a", base / "st-first" / "b"
    a_root.mkdir(parents=True)
    b_root.mkdir(parents=True)
    make_small_files(a_root, n)
    proxies: list[DelayProxy] = []
    try:
        with _syncthing_pair(base, link, "st-first", {"a": a_root, "b": b_root}, proxies) as pair:
            log(f"slow_link: Syncthing A -> B of {n} files across the link")
            t0 = pair.start()
            st = pair.wait_b_has(n, 1800)
            seconds = time.perf_counter() - t0
            cpu = pair.cpu()
            b_in = pair.bytes_total("b")[0]
    finally:
        for p in proxies:
            p.close()
    got = count_files(b_root)
    if got != n:
        raise RuntimeError(f"Syncthing's B has {got} files, expected {n}")
    log(f"slow_link: Syncthing {seconds:.2f}s")
    return {"seconds": seconds, "cpu_a": cpu["a"], "cpu_b": cpu["b"], "b_in_bytes": b_in, "b_status": st}


def _shoal_latency(base: Path, server, relay: DelayProxy, link: Link, count: int) -> dict:
    """Part 3, shoal: two `shoal run` daemons (default config: debounce 1s) through the link,
    each through a delaying proxy of its own (the same path, counted apart): `count` samples
    with the proxies not delaying, then `count` delaying (the same daemons); and each daemon's
    round trips per sample (all its traffic during the samples, per sample)."""
    from bench.daemon import DaemonProc
    from bench.latency import latency_samples

    create_db(server, "hub_lat")
    proxies = {who: DelayProxy(tcp_upstream(link.HUB_IP, relay.port, link.dev)) for who in ("a", "b")}
    roots = {who: base / "lat" / f"{who}-folder" for who in ("a", "b")}
    for root in roots.values():
        root.mkdir(parents=True)
    (roots["a"] / "hello.txt").write_text("hello\n")
    daemons = []
    try:
        for who in ("a", "b"):  # as latency.two_daemons, each with its own proxy
            daemons.append(DaemonProc(base / "lat", who, f"postgresql://postgres@127.0.0.1:{proxies[who].port}/hub_lat",
                                      roots[who], debounce="1s"))
            daemons[-1].start()
        for d in daemons:
            d.wait_settled(1, 300)
        time.sleep(1.0)
        out: dict = {}
        for label, delay in (("fast", 0.0), ("slow", ONE_WAY)):
            for p in proxies.values():
                p.delay = delay
            t0 = {who: p.counters()[0] for who, p in proxies.items()}
            out[label] = latency_samples(roots["a"], roots["b"], count, f"slow_link shoal {label}")
            for who, p in proxies.items():
                out[f"{label}_trips_{who}"] = (p.counters()[0] - t0[who]) / count
        return out
    finally:
        for d in daemons:
            d.stop()
        for p in proxies.values():
            p.close()


def _syncthing_latency(base: Path, link: Link, count: int) -> list[float]:
    from bench.latency import latency_samples

    a_root, b_root = base / "st-lat" / "a", base / "st-lat" / "b"
    a_root.mkdir(parents=True)
    b_root.mkdir(parents=True)
    (a_root / "hello.txt").write_text("hello\n")
    proxies: list[DelayProxy] = []
    try:
        with _syncthing_pair(base, link, "st-lat", {"a": a_root, "b": b_root}, proxies,
                             watcher=True, watcher_delay_s=1) as pair:
            pair.start()
            pair.wait_b_has(1, 300)
            pair.wait_connected()
            time.sleep(1.0)
            return latency_samples(a_root, b_root, count, "slow_link syncthing")
    finally:
        for p in proxies:
            p.close()


def measure(sc: Scale) -> list[Row]:
    from bench.latency import percentile
    from bench.syncthing import available

    n = sc.link_files
    with workdir("slow_link") as base, Link() as link, postgres(base) as server:
        lc = check_link(link)
        log(f"slow_link: link check: {lc['up_mbit']:.1f} Mbit/s up, {lc['down_mbit']:.1f} down, "
            f"{lc['rtt_ms']:.1f} ms round trip through the proxy")
        info = server.get_postmaster_info()
        relay = DelayProxy(str(Path(info.socket_dir) / f".s.PGSQL.{info.port or 5432}"), host=link.HUB_IP,
                           ns=link.hub)
        proxy = DelayProxy(tcp_upstream(link.HUB_IP, relay.port, link.dev), delay=ONE_WAY)
        try:
            figures = _round_trips(base, server, proxy)
            first = _shoal_first_sync(base, server, proxy, n)
            lat = _shoal_latency(base, server, relay, link, sc.latency_samples)
        finally:
            proxy.close()
            relay.close()
        st_first = st_lat = None
        st_error = ""
        if available() and not os.environ.get("SHOAL_BENCH_NO_SYNCTHING"):
            try:
                st_first = _syncthing_first_sync(base, link, n)
                st_lat = _syncthing_latency(base, link, sc.latency_samples)
            except Exception as e:  # Syncthing's trouble is not shoal's result
                st_error = f"Syncthing measurement failed ({type(e).__name__}: {str(e)[:300]})"
                log(st_error)
        else:
            st_error = "Syncthing not measured (not installed, or --no-syncthing)"
    link_note = (f"link: veth between two namespaces, tbf 20mbit each way + a proxy holding chunks "
                 f"{ONE_WAY * 1000:.0f} ms each way; checked: {lc['up_mbit']:.1f} Mbit/s up, "
                 f"{lc['down_mbit']:.1f} down, {lc['rtt_ms']:.1f} ms round trip through the proxy")
    rows = []
    for key, what in (("idle", "no-change sync --now"), ("push", "push one edit"), ("pull", "pull one edit")):
        (slow, trips), (fast, _) = figures["slow"][key], figures["fast"][key]
        rows.append(Row("slow_link", what, slow, "s", baseline=fast, baseline_label="same link, no delay",
                        ratio=slow / fast if fast else None, target="", ok=None,
                        note=f"{trips} round trips (counted at the proxy; connection setup included); "
                             f"{slow - fast:.3f} s more than undelayed; median of {RUNS}"
                             + ("; " + link_note if key == "idle" else ""),
                        details={"round_trips": trips, "link": lc}))
    a, b = first["a"], first["b"]
    total = a["seconds"] + b["seconds"]
    moved = a["bytes_up"] + a["bytes_down"] + b["bytes_up"] + b["bytes_down"]
    limit = first["data_bytes"] * 8 / RATE_BITS
    shoal_note = (f"A {a['seconds']:.2f} s ({a['round_trips']} round trips, {a['bytes_up'] / 1e6:.2f} MB up, "
                  f"CPU {a['cpu']:.1f} s) + B {b['seconds']:.2f} s ({b['round_trips']} round trips, "
                  f"{b['bytes_down'] / 1e6:.2f} MB down, CPU {b['cpu']:.1f} s)")
    if st_first:
        ratio = total / st_first["seconds"]
        rows.append(Row("slow_link", f"first_sync_{n // 1000}k", total, "s", st_first["seconds"],
                        "Syncthing 1.19, same link", ratio, "<= 0.5x", ratio <= 0.5,
                        f"{shoal_note}; Syncthing from starting both until B had all {n} files, CPU A "
                        f"{st_first['cpu_a']:.1f} s + B {st_first['cpu_b']:.1f} s, "
                        f"{st_first['b_in_bytes'] / 1e6:.2f} MB into B", {"shoal": first, "syncthing": st_first}))
    else:
        rows.append(Row("slow_link", f"first_sync_{n // 1000}k", total, "s", target="<= 0.5x Syncthing", ok=None,
                        note=f"{shoal_note}; {st_error}", details={"shoal": first}))
    rows.append(Row("slow_link", "hub_init", first["init"]["seconds"], "s", target="", ok=None,
                    note=f"`shoal hub init` of an empty database across the link (done before the first sync, "
                         f"not counted in it): {first['init']['round_trips']} round trips"))
    rows.append(Row("slow_link", "link_limit", limit, "s", target="", ok=None,
                    note=f"the {n} files' {first['data_bytes']:,} bytes at 20 Mbit/s; shoal moved "
                         f"{moved:,} bytes across the link in all (A and B, both ways: "
                         f"{moved * 8 / RATE_BITS:.2f} s of the link's time)",
                    details={"data_bytes": first["data_bytes"], "shoal_bytes": moved}))
    slow, fast = lat["slow"], lat["fast"]
    p50, p90 = percentile(slow, 0.5), percentile(slow, 0.9)
    st50 = percentile(st_lat, 0.5) if st_lat else None
    rows.append(Row("slow_link", "latency_p50", p50, "s", st50, "Syncthing, watcher on (delay 1 s)" if st_lat else "",
                    p50 / st50 if st50 else None, f"<= {LATENCY_TARGET:.2f} s", p50 <= LATENCY_TARGET,
                    f"{len(slow)} files saved on A, polled on B every 10 ms; two `shoal run` daemons, default "
                    f"config (debounce 1s), across the link; min {min(slow):.3f} s max {max(slow):.3f} s; "
                    f"round trips per sample (counted at each daemon's proxy, all its traffic): A "
                    f"{lat['slow_trips_a']:.1f}, B {lat['slow_trips_b']:.1f}"
                    + (f"; Syncthing p90 {percentile(st_lat, 0.9):.3f} s (fsWatcherDelayS 1; its default is 10)"
                       if st_lat else f"; {st_error}"),
                    {"samples": slow, "samples_undelayed": fast,
                     "round_trips_per_sample": {"a": lat["slow_trips_a"], "b": lat["slow_trips_b"]},
                     "syncthing_samples": st_lat}))
    rows.append(Row("slow_link", "latency_p90", p90, "s", percentile(st_lat, 0.9) if st_lat else None,
                    "Syncthing" if st_lat else "", None, "", None))
    rows.append(Row("slow_link", "latency_p50_undelayed", percentile(fast, 0.5), "s", target="", ok=None,
                    note=f"the same daemons, the proxy not delaying (tbf link only), {len(fast)} samples before "
                         f"the delayed ones: p90 {percentile(fast, 0.9):.3f} s; the 40 ms round trip adds "
                         f"{p50 - percentile(fast, 0.5):.3f} s to p50"))
    return rows
