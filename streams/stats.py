"""The worker's counters (read by the metrics collector and the end-of-run summary)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Stats:
    events: int = 0  # market inputs taken, each offset once (redelivered, stale and ahead copies not counted)
    skipped: int = 0  # inputs already included in restored state
    redelivered: int = 0  # the same input handed out twice by Faust (acknowledged, not applied twice)
    dead_letters: int = 0
    idle_drains: int = 0  # releases of everything held at the end of input (wall clock: the worker idle)
    stale: int = 0  # inputs of a partition revoked while (or before) they were taken: left to the new owner
    ahead: int = 0  # inputs handed out past the partition's next offset (an old fetch position): read again
    seeks: int = 0  # seeks back to a partition's next offset after such inputs
    filled: int = 0  # inputs Faust skipped over (see ahead), read directly from Kafka and taken in order
    risk_refetched: int = 0  # risk inputs Faust skipped over, read directly from Kafka and applied in order
    outputs: dict[str, int] = field(default_factory=dict)
    last_activity: float = field(default_factory=time.monotonic)
    started: float | None = None  # monotonic time of the first event
