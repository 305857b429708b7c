"""Bounded retries with exponential backoff and full jitter, for idempotent steps.

Only ``CreatioUnavailable`` is retried; a ``Retry-After`` longer than the policy allows ends
the operation at once (the caller, e.g. the daemon, retries later). Imports no HTTP library.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog

from creatio_attach.errors import CreatioUnavailable

T = TypeVar("T")
log = structlog.get_logger()


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one operation tries before ``CreatioUnavailable`` escapes.

    ``attempts`` counts every try of one step (5: the first and four retries). The n-th
    wait is uniform in [0, min(cap, base * 2**n)], at least ``Retry-After`` when given.
    """

    attempts: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    max_retry_after: float = 120.0

    def delay(self, retry_number: int, retry_after: float | None) -> float:
        ceiling = min(self.backoff_cap, self.backoff_base * (2**retry_number))
        jittered = random.uniform(0.0, ceiling)  # noqa: S311 - jitter, not a secret
        return max(jittered, retry_after) if retry_after is not None else jittered


class Retrier:
    """Runs steps under a policy; ``stop`` (set on close) cuts every wait short."""

    def __init__(self, policy: RetryPolicy, stop: threading.Event) -> None:
        self.policy = policy
        self.stop = stop

    def wait(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise CreatioUnavailable("the Creatio client was closed while waiting to retry")

    def call(
        self,
        step: Callable[[], T],
        *,
        what: str,
        before_retry: Callable[[CreatioUnavailable], None] | None = None,
    ) -> T:
        """``step()`` until it succeeds, a non-retryable error escapes, or attempts run out."""
        attempt = 0
        while True:
            try:
                return step()
            except CreatioUnavailable as exc:
                attempt += 1
                too_long = (
                    exc.retry_after is not None and exc.retry_after > self.policy.max_retry_after
                )
                if attempt >= self.policy.attempts or too_long or not exc.retry_soon:
                    raise
                delay = self.policy.delay(attempt - 1, exc.retry_after)
                log.info(
                    "creatio.retry",
                    step=what,
                    attempt=attempt,
                    status=exc.status,
                    wait_s=round(delay, 3),
                    error=exc.message,
                )
                self.wait(delay)
                if before_retry is not None:
                    before_retry(exc)
