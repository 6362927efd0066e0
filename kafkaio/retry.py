"""The one retry helper: jittered exponential backoff with an injectable clock, sleep and random source
(testable without sleeping).

Jitter is "equal jitter": attempt n waits uniform(c/2, c) seconds with c = min(cap, base * 2**n). Half of
each wait is fixed, so the waits grow with the attempts (a dead database is not hammered), and the other
half is random, so clients that failed together do not retry together.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .errors import RetryableError

T = TypeVar("T")


@dataclass
class Backoff:
    """Equal-jitter exponential backoff: attempt n waits uniform(c/2, c) seconds, c = min(cap, base * 2**n)."""

    base_s: float = 0.5
    cap_s: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


def retry(
    func: Callable[[], T],
    *,
    what: str,
    deadline_s: float | None,
    backoff: Backoff | None = None,
    retry_on: tuple[type[BaseException], ...] = (RetryableError,),
    now: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
    on_retry: Callable[[int, float, BaseException], None] | None = None,
    stopped: Callable[[], bool] | None = None,
) -> T:
    """Call ``func`` until it succeeds, retrying ``retry_on`` errors with backoff.

    ``deadline_s``: give up (RetryableError naming ``what``) when the next wait would end past it; None:
    retry until it succeeds or ``stopped()``. ``on_retry(attempt, delay, error)`` runs before each wait
    (logging, closing a broken connection). ``stopped``: checked after each failure; when true the last
    error is raised. ``sleep`` may return early (a stop event's ``wait``).
    """
    backoff = backoff or Backoff()
    start = now()
    while True:
        try:
            return func()
        except retry_on as exc:
            if stopped is not None and stopped():
                raise
            delay = backoff.next_delay()
            if deadline_s is not None and now() + delay - start > deadline_s:
                raise RetryableError(f"{what}: gave up after {backoff.attempt} attempts: {exc}") from exc
            if on_retry is not None:
                on_retry(backoff.attempt, delay, exc)
            sleep(delay)
