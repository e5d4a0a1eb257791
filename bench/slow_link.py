"""slow_link: the hub behind a link with a 40 ms round trip (a TCP proxy on 127.0.0.1 that
holds every chunk 20 ms in each direction; this kernel has no netem). Measured: a no-change
`shoal sync --now`, pushing one edit, pulling it on another device (median of 5 each), and the
same commands with the proxy not delaying (same run). The proxy counts round trips (an answer
after a request), connection setup included (TLS-less startup and authentication).
Target (issue 14): a cycle costs a small constant number of round trips.
"""

from __future__ import annotations

import heapq
import socket
import statistics
import threading
import time
from pathlib import Path

from bench.fixtures import create_db, postgres, workdir, write_config
from bench.processes import check, child_env, run_child, shoal_cmd
from bench.report import Row, log
from bench.scale import Scale

ONE_WAY = 0.020  # seconds each chunk is held in each direction: a 40 ms round trip
RUNS = 9


class DelayProxy:
    """Forwards 127.0.0.1:port to the Unix socket `target`, holding each chunk `delay` seconds
    (order kept)."""

    def __init__(self, target: str):
        self.target = target
        self.delay = 0.0
        self.turns = 0  # round trips: answers that followed a request, over all connections
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            last = ["answer"]  # the direction of the connection's last chunk
            for src, dst, side in ((client, upstream, "request"), (upstream, client, "answer")):
                queue: list[tuple[float, int, bytes]] = []
                ready = threading.Condition()
                threading.Thread(target=self._read, args=(src, queue, ready, side, last), daemon=True).start()
                threading.Thread(target=self._send, args=(dst, queue, ready), daemon=True).start()

    def _read(self, src: socket.socket, queue: list, ready: threading.Condition, side: str, last: list) -> None:
        n = 0
        while True:
            try:
                data = src.recv(1 << 16)
            except OSError:
                data = b""
            if data:
                with self._lock:
                    if side == "answer" and last[0] == "request":
                        self.turns += 1
                    last[0] = side
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
        self.listener.close()


def _sync(proxy: DelayProxy, cfg: Path, what: str) -> tuple[float, int]:
    """(seconds, round trips) of one `shoal sync --now`."""
    turns = proxy.turns
    seconds = check(run_child(shoal_cmd() + ["sync", "--now"], child_env(cfg)), what).seconds
    return seconds, proxy.turns - turns


def measure(sc: Scale) -> list[Row]:
    with workdir("slow_link") as base, postgres(base) as server:
        create_db(server, "hub")
        info = server.get_postmaster_info()
        proxy = DelayProxy(str(Path(info.socket_dir) / f".s.PGSQL.{info.port or 5432}"))
        hub = f"postgresql://postgres@127.0.0.1:{proxy.port}/hub"
        a_root, b_root = base / "a" / "folder", base / "b" / "folder"
        a_root.mkdir(parents=True)
        b_root.mkdir(parents=True)
        (a_root / "notes.txt").write_text("v0\n")
        cfg_a = write_config(base / "a.yaml", name="a", state=base / "a" / "state", hub=hub, folder=a_root)
        cfg_b = write_config(base / "b.yaml", name="b", state=base / "b" / "state", hub=hub, folder=b_root)
        for cfg in (cfg_a, cfg_b, cfg_a, cfg_b):
            check(run_child(shoal_cmd() + ["sync", "--now"], child_env(cfg)), "first syncs")
        figures: dict[str, dict[str, tuple[float, int]]] = {}
        edits = iter(range(1_000_000))
        for label, delay in (("fast", 0.0), ("slow", ONE_WAY)):
            proxy.delay = delay
            runs: dict[str, list[tuple[float, int]]] = {"idle": [], "push": [], "pull": []}
            for _ in range(RUNS):
                runs["idle"].append(_sync(proxy, cfg_a, "no-change sync"))
                (a_root / "notes.txt").write_text(f"edit {next(edits)}\n")
                runs["push"].append(_sync(proxy, cfg_a, "push"))
                runs["pull"].append(_sync(proxy, cfg_b, "pull"))
            if (b_root / "notes.txt").read_text() != (a_root / "notes.txt").read_text():
                raise RuntimeError("B did not get A's last edit")
            figures[label] = {k: (statistics.median(s for s, _ in v), int(statistics.median(t for _, t in v)))
                              for k, v in runs.items()}
            log(f"slow_link {label}: " + ", ".join(f"{k} {s:.3f}s ({t} round trips)"
                                                   for k, (s, t) in figures[label].items()))
        proxy.close()
    rows = []
    for key, what in (("idle", "no-change sync --now"), ("push", "push one edit"), ("pull", "pull one edit")):
        (slow, trips), (fast, _) = figures["slow"][key], figures["fast"][key]
        rows.append(Row("slow_link", what, slow, "s", baseline=fast, baseline_label="same, no delay",
                        ratio=slow / fast if fast else None, target="", ok=None,
                        note=f"{trips} round trips (counted at the proxy; connection setup included); "
                             f"{slow - fast:.3f} s more than undelayed; median of {RUNS}",
                        details={"round_trips": trips}))
    return rows
