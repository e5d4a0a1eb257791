"""Child processes as a user runs them: the `shoal` console script in a new process with its own
config, timed with that child's own rusage (wait4); CPU time of running processes from /proc.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


def shoal_cmd() -> list[str]:
    """The `shoal` console script of this interpreter's environment (as a user runs it)."""
    script = Path(sys.executable).parent / "shoal"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "shoal"]


def child_env(config: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
    env.pop("SHOAL_CONFIG", None)
    if config is not None:
        env["SHOAL_CONFIG"] = str(config)
    return env


@dataclass
class ChildRun:
    seconds: float
    returncode: int
    maxrss_kb: int
    cpu_user: float
    cpu_sys: float
    stdout: str
    stderr: str


def run_child(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 3600) -> ChildRun:
    """Run a command; wall time and that child's own rusage (CPU) via wait4, and its peak RSS.

    wait4 gives exactly the RUSAGE_CHILDREN figures of this one child (and whatever it
    waited for), without mixing in earlier children of the bench process. Its ru_maxrss,
    though, is at least the bench process's own RSS when the child was forked (the kernel keeps
    the high-water mark of the memory the child had before exec): after a benchmark that grew
    the bench process (push_100k works in-process), every child looked that big. The peak RSS
    is therefore the child's VmHWM (its memory after exec) read from /proc every 20 ms while it
    runs; ru_maxrss only for a child gone before the first reading.
    """
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    deadline = started + timeout
    hwm_kb = 0
    polls = 0
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            pid, status, ru = os.wait4(proc.pid, 0)
            break
        if polls % 10 == 0:
            hwm_kb = max(hwm_kb, proc_status_kb(proc.pid, "VmHWM"))
        polls += 1
        time.sleep(0.002)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    err.seek(0)
    return ChildRun(seconds, proc.returncode, hwm_kb or ru.ru_maxrss, ru.ru_utime, ru.ru_stime,
                    out.read().decode(errors="replace"), err.read().decode(errors="replace"))


def proc_status_kb(pid: int, field: str) -> int:
    """A kB figure of a running process from /proc/PID/status (e.g. VmHWM, its peak resident
    set; RssAnon); 0 if it cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def check(run: ChildRun, what: str) -> ChildRun:
    if run.returncode != 0:
        raise RuntimeError(f"{what} exited {run.returncode}: {run.stderr.strip()[-2000:]}")
    return run


def cpu_seconds(pid: int) -> float:
    """utime+stime of a process (all its threads) from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    # after "pid (comm)": state is field 3, so utime (14) and stime (15) are at 11 and 12
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (from /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out
