"""Jittered exponential backoff with an injectable clock and random source (testable without sleeping)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from kafkaio.errors import RetryableError

T = TypeVar("T")


@dataclass
class Backoff:
    """Full-jitter exponential backoff: attempt n waits uniform(0, min(cap, base * 2**n)) seconds."""

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
    deadline_s: float,
    backoff: Backoff | None = None,
    retry_on: tuple[type[BaseException], ...] = (RetryableError,),
    now: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, float, BaseException], None] | None = None,
) -> T:
    """Call ``func`` until it succeeds, retrying ``retry_on`` errors with backoff until ``deadline_s``."""
    backoff = backoff or Backoff()
    start = now()
    while True:
        try:
            return func()
        except retry_on as exc:
            delay = backoff.next_delay()
            if now() + delay - start > deadline_s:
                raise RetryableError(f"{what}: gave up after {backoff.attempt} attempts: {exc}") from exc
            if on_retry is not None:
                on_retry(backoff.attempt, delay, exc)
            sleep(delay)
