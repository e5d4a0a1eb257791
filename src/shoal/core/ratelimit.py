"""A token bucket for bandwidth limits (`sync.max_upload_rate`, `sync.max_download_rate`).

The bucket fills at `rate` bytes per second up to `burst` bytes. `take(n, now)` pays for n bytes
*before* they move and answers how long to wait first: the bucket may go into debt (a 16 MiB
block is larger than any sensible burst), and the wait is exactly the time the debt takes to
refill. A caller that waits as told never moves more than `burst + rate * elapsed` bytes, and
one that moves data back to back moves N bytes in `(N - burst) / rate` seconds.

Not thread-safe (callers sharing a bucket lock around `take`). Pure: the clock is passed in.
"""

from __future__ import annotations

import math

#: The burst allowance: this many seconds' worth of bytes, but at least MIN_BURST bytes (so a
#: small file is not held back at a low rate), and never more than MAX_BURST bytes.
BURST_SECONDS = 0.1
MIN_BURST = 128 * 1024
MAX_BURST = 4 * 1024 * 1024


def default_burst(rate: float) -> float:
    """The burst allowance for `rate` bytes per second (see BURST_SECONDS)."""
    return min(MAX_BURST, max(MIN_BURST, rate * BURST_SECONDS))


class TokenBucket:
    """`rate` bytes per second (0 = unlimited), `burst` bytes of allowance (default_burst);
    full at `now`. Raises ValueError for a negative, infinite or NaN rate or burst."""

    def __init__(self, rate: float, now: float, burst: float | None = None):
        if not math.isfinite(rate) or rate < 0:
            raise ValueError(f"rate must be finite and >= 0 (got {rate!r})")
        burst = default_burst(rate) if burst is None else burst
        if not math.isfinite(burst) or burst < 0:
            raise ValueError(f"burst must be finite and >= 0 (got {burst!r})")
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = self.burst
        self.last = now

    @property
    def unlimited(self) -> bool:
        return self.rate == 0

    def take(self, n: int, now: float) -> float:
        """Pay for `n` bytes at time `now`; return the seconds to wait before moving them (0.0
        when the allowance covers them). A clock that goes back gives no tokens."""
        if self.rate == 0 or n <= 0:
            return 0.0
        if now > self.last:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
        self.tokens -= n
        return -self.tokens / self.rate if self.tokens < 0 else 0.0
