"""Retry delays: exponential, capped, with jitter (SPEC "Bad input": hub down, network gone).

Pure: the random draw is passed in, so a test can pin it and a daemon can use its own RNG.
"""

from __future__ import annotations

# 2**64 seconds is beyond any cap; stop growing there instead of overflowing a float.
_MAX_EXPONENT = 64


def backoff_ceiling(attempt: int, *, base: float = 1.0, cap: float = 300.0) -> float:
    """The largest delay of retry number `attempt` (0 = first retry): min(cap, base * 2**attempt).

    Never decreases as `attempt` grows. Raises ValueError for a negative attempt, or a base or
    cap that is not positive.
    """
    if attempt < 0:
        raise ValueError(f"negative attempt: {attempt}")
    if not base > 0:
        raise ValueError(f"base must be positive, not {base}")
    if not cap > 0:
        raise ValueError(f"cap must be positive, not {cap}")
    return min(cap, base * 2.0 ** min(attempt, _MAX_EXPONENT))


def backoff_delay(attempt: int, *, base: float = 1.0, cap: float = 300.0, rand: float) -> float:
    """Seconds to wait before retry number `attempt`: in [ceiling/2, ceiling], where ceiling is
    `backoff_ceiling(attempt)` and `rand` (uniform in [0, 1)) picks the point, so devices
    that failed together do not retry together. Attempt 0 waits about `base`.
    Raises ValueError for `rand` outside [0, 1) and as `backoff_ceiling` does.
    """
    if not 0.0 <= rand < 1.0:
        raise ValueError(f"rand must be in [0, 1), not {rand}")
    ceiling = backoff_ceiling(attempt, base=base, cap=cap)
    return ceiling / 2 + rand * (ceiling / 2)
