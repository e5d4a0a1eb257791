"""Debouncing file events: a path is handed on once it has been quiet for a while.

Owns SPEC "Sync semantics" / Ignored: files still being written (changed again within the
debounce time) are not synced yet. Watcher events only say where to look; each `mark` restarts
the path's quiet period, and `due` hands out the paths whose quiet period is over. A marked
directory is a path like any other: the scanner rescans it. The clock is passed in.
"""

from __future__ import annotations

import heapq
from typing import Generic, TypeVar

K = TypeVar("K")  # a key: hashable and orderable (a path, or a tuple naming one)


class Debouncer(Generic[K]):
    """Pending keys (paths, or anything hashable and orderable naming one) with the time each
    was last marked."""

    def __init__(self, quiet: float):
        """`quiet`: seconds a path must go unmarked before it is due. Raises ValueError if
        negative."""
        if quiet < 0:
            raise ValueError(f"quiet time must not be negative: {quiet}")
        self.quiet = quiet
        self._last: dict[K, float] = {}
        # (deadline, path); entries superseded by a later mark are skipped when popped.
        self._heap: list[tuple[float, K]] = []

    def __len__(self) -> int:
        return len(self._last)

    def mark(self, path: K, now: float) -> None:
        """Record an event on `path` at `now`, restarting its quiet period. Raises nothing."""
        self._last[path] = now
        heapq.heappush(self._heap, (now + self.quiet, path))
        if len(self._heap) > 2 * len(self._last) + 64:
            # A path marked over and over leaves stale entries behind: rebuild now and then.
            self._heap = [(last + self.quiet, p) for p, last in self._last.items()]
            heapq.heapify(self._heap)

    def due(self, now: float) -> list[K]:
        """Remove and return (sorted) the paths whose quiet period is over: last mark + quiet
        <= `now` (so `due(next_deadline())` returns the path that deadline belongs to).
        Raises nothing."""
        ready = []
        while self._heap and self._heap[0][0] <= now:
            deadline, path = heapq.heappop(self._heap)
            last = self._last.get(path)
            if last is not None and last + self.quiet == deadline:
                del self._last[path]
                ready.append(path)
        return sorted(ready)

    def next_deadline(self) -> float | None:
        """The earliest time at which a path becomes due, or None if nothing is pending.
        Raises nothing."""
        while self._heap:
            deadline, path = self._heap[0]
            last = self._last.get(path)
            if last is not None and last + self.quiet == deadline:
                return deadline
            heapq.heappop(self._heap)
        return None
