"""Progress on a terminal (rich) for long work: files, bytes and rate. Silent when not a TTY."""

from __future__ import annotations

import sys
import time



class ProgressSink:
    """Receives progress of long work; the CLI draws it, the daemon reports it on its socket."""

    def phase(self, folder_id: str, phase: str, total_files: int = 0, total_bytes: int = 0) -> None:
        pass

    def advance(self, files: int = 0, nbytes: int = 0, path: str | None = None) -> None:
        pass


class TerminalProgressBar(ProgressSink):
    """A ProgressSink drawing one live bar on stderr; a no-op when stderr is not a terminal."""

    def __init__(self, label: str):
        self.label = label
        self.enabled = sys.stderr.isatty()
        self._progress = None
        self._task = None
        self.files = 0
        self.bytes = 0

    def __enter__(self) -> TerminalProgressBar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[volume]}"), TimeElapsedColumn(),
                console=Console(stderr=True), transient=True)
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=None, volume="")
            self._started = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def phase(self, folder_id: str, phase: str, total_files: int = 0, total_bytes: int = 0) -> None:
        self.files = 0
        self.bytes = 0
        if self._progress is not None:
            self._started = time.monotonic()
            self._progress.update(self._task, description=f"{folder_id}: {phase}",
                                  total=total_files or None, completed=0, volume="")

    def advance(self, files: int = 0, nbytes: int = 0, path: str | None = None) -> None:
        self.files += files
        self.bytes += nbytes
        if self._progress is not None:
            rate = self.bytes / max(time.monotonic() - self._started, 1e-3)
            volume = f"{human_bytes(self.bytes)} ({human_bytes(rate)}/s)" if self.bytes else ""
            self._progress.update(self._task, completed=self.files, volume=volume)


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
