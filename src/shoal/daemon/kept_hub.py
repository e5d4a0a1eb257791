"""The daemon's hub connection, kept from one cycle to the next.

Connecting and logging in costs about 4 round trips before the first call (TCP, TLS or the
startup packet, the password exchange, the schema check): across a 40 ms link, ~160 ms on each
side of every change. A cycle on a kept connection starts with its first call instead.

A kept connection is dropped, and the next cycle connects afresh, when:
- the cycle on it failed (whatever the reason: a new connection is the safe start);
- it sat idle longer than KEEP_IDLE (links drop idle connections silently: NAT, a phone's radio);
- the server sent something on it between cycles: nothing is expected there (the daemon listens
  for notifications on a connection of its own), so data or an end of stream is the server
  closing it (a restart, an administrator ending the session) — found without a round trip.
"""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Callable

from shoal.errors import ShoalError
from shoal.hub.client import Hub

log = logging.getLogger("shoal.daemon")
KEEP_IDLE = 60.0  # seconds a connection may sit unused and still be used again


class KeptHub:
    """`get` is the engine's hub factory, `release` its way of giving a hub back (see
    SyncEngine); `close` ends the kept connection. Used by the daemon's main loop only."""

    def __init__(self, open_hub: Callable[[], Hub], clock: Callable[[], float] = time.monotonic):
        self.open_hub = open_hub
        self.clock = clock
        self._hub: Hub | None = None
        self._released_at = 0.0

    def get(self) -> Hub:
        hub, self._hub = self._hub, None
        if hub is not None and (self.clock() - self._released_at > KEEP_IDLE or not _quiet(hub)):
            _close(hub)
            hub = None
        return hub if hub is not None else self.open_hub()

    def release(self, hub: Hub, ok: bool) -> None:
        if ok and self._hub is None:
            self._hub, self._released_at = hub, self.clock()
        else:
            _close(hub)

    def close(self) -> None:
        hub, self._hub = self._hub, None
        if hub is not None:
            _close(hub)


def _quiet(hub: Hub) -> bool:
    """Whether nothing has arrived on the connection since its last answer (see the module)."""
    conn = hub.conn
    if conn.closed or conn.broken:
        return False
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _close(hub: Hub) -> None:
    try:
        hub.close()
    except ShoalError as e:  # sending the last acks failed: the next connection sends them again
        log.debug("closing the hub connection: %s", e)
