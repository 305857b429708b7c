"""How long a file waits before its next try: exponential backoff with full jitter.

Pure arithmetic: imports nothing from the project, no sqlite3, and never reads the clock.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable


def next_retry_delay(
    attempt: int,
    *,
    base: float = 2.0,
    cap: float = 300.0,
    retry_after: float | None = None,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before try number ``attempt + 1`` (``attempt`` >= 1 failures so far).

    Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**(attempt-1))).
    A server's Retry-After is honoured as a minimum; it may exceed ``cap`` but is bounded by
    max(cap, 1 h) so a broken header cannot park a file for days.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    if base <= 0 or cap <= 0:
        raise ValueError("base and cap must be positive")
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 60))
    delay = ceiling * min(max(rng(), 0.0), 1.0)
    if retry_after is not None and math.isfinite(retry_after) and retry_after > 0:
        delay = max(delay, min(retry_after, max(cap, 3600.0)))
    return delay
