"""Garbage-collector tuning for the long-running stream processes (ingest, the streams worker).

Python's default thresholds (700/10/10) run a full collection about every 0.4 s in a process that holds
many live objects, scanning the whole heap each time (50-140 ms pauses here, nothing freed). What exists
once a process is warm (modules, clients, calendars, warm-start indexes) lives as long as the process:
:meth:`CollectorTuning.freeze` moves it out of the collector's reach and raises the thresholds; a full
collection then runs every ``full_interval_s`` from the process's own loop (:meth:`maybe_collect`).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class CollectorTuning:
    """Freeze once, then a timed full collection; ``now`` is injectable (monotonic seconds)."""

    def __init__(
        self,
        thresholds: tuple[int, int, int],
        full_interval_s: float,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.thresholds = thresholds
        self.full_interval_s = full_interval_s
        self.now = now
        self.frozen = False
        self.last_full = 0.0

    def freeze(self) -> None:
        """Freeze what exists now and raise the thresholds (only the first call does anything)."""
        if self.frozen:
            return
        gc.freeze()
        gc.set_threshold(*self.thresholds)
        self.last_full = self.now()
        self.frozen = True

    def maybe_collect(self) -> int | None:
        """A full collection when one is due (frozen, an interval set and elapsed); the objects collected."""
        if not self.frozen or not self.full_interval_s:
            return None
        started = self.now()
        if started - self.last_full < self.full_interval_s:
            return None
        self.last_full = started
        collected = gc.collect()
        log.debug("full garbage collection: %d objects in %.1f ms", collected, (self.now() - started) * 1e3)
        return collected
