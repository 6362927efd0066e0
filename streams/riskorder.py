"""Risk inputs in event-time order, whichever worker sent them.

The risk state is account-wide, so every risk input (a signal with the market it saw, a closed trade, a
refused order) goes to one partition. With several workers, each appends its signals as it gets to them,
so the partition's order depends on how fast each worker is: the risk engine would see another order, and
give other risk_day updates (and, when a limit binds, other decisions), whatever N workers ran.

So the risk agent does not apply inputs in arrival order. It holds them, ordered by (event time, kind, id),
and applies those older than the *watermark*: each worker, after the outputs of a fetch, appends for each
market partition it owns a progress marker, the event time below which it will send no more signals from
that partition (the oldest event its merge still holds, and the newest event time read from each of the
partition's two topics: ingest publishes each partition in venue order). The watermark is the lowest
progress over all market partitions. A worker that has read everything and been quiet ``idle_ms`` releases
what its merges hold and marks its partitions done (progress = the end of time), so the last inputs of a
session are applied; new input afterwards lowers its progress again. Closed trades and refused orders (from the
router) take their place by their event time too. Everything held is part of the risk state (changelog).
"""

from __future__ import annotations

import heapq
from typing import Any

import orjson

from .core.statecodec import StateError

END = (1 << 63) - 1  # progress of a partition read to its end and quiet: nothing older will come
_RANK = {"ledger": 0, "order": 1, "signal": 2}  # at one event time: closes free their slot before new signals


def sort_key(body: dict[str, Any]) -> tuple[int, int, str]:
    """(event time, kind, id) of a risk input."""
    if "ledger" in body:
        return int(body["ledger"]["ts"]), _RANK["ledger"], str(body["ledger"]["intent_id"])
    if "order" in body:
        return int(body["order"]["ts"]), _RANK["order"], str(body["order"]["intent_id"])
    signal = body["signal"]
    return int(signal["ts"]), _RANK["signal"], str(signal["id"])


def progress_marker(partition: int, ts: int) -> dict[str, Any]:
    return {"progress": {"partition": partition, "ts": ts}}


class RiskOrder:
    def __init__(self, partitions: int) -> None:
        self.partitions = partitions  # of the market topics
        self.progress: dict[int, int] = {}
        self._heap: list[tuple[int, int, str, bytes]] = []

    def take(self, value: bytes) -> None:
        """A record of the risk input partition: a progress marker, or an input to hold until its turn."""
        body = orjson.loads(value)
        marker = body.get("progress")
        if marker is not None:
            self.progress[int(marker["partition"])] = int(marker["ts"])
            return
        heapq.heappush(self._heap, (*sort_key(body), value))

    def watermark(self) -> int | None:
        """The lowest progress over the market partitions (None until each has reported)."""
        if len(self.progress) < self.partitions or any(p not in self.progress for p in range(self.partitions)):
            return None
        return min(self.progress[p] for p in range(self.partitions))

    def release(self) -> list[bytes]:
        """The inputs older than the watermark, in order (all of them once every partition is done)."""
        mark = self.watermark()
        if mark is None:
            return []
        out = []
        heap = self._heap
        while heap and (heap[0][0] < mark or mark == END):
            out.append(heapq.heappop(heap)[3])
        return out

    def held(self) -> int:
        return len(self._heap)

    def export(self) -> bytes:
        return orjson.dumps(
            {
                "v": 1,
                "progress": {str(p): ts for p, ts in sorted(self.progress.items())},
                "held": [[ts, rank, ident, value.decode()] for ts, rank, ident, value in sorted(self._heap)],
            }
        )

    def restore(self, data: bytes) -> None:
        try:
            body = orjson.loads(data)
            if body.get("v") != 1:
                raise StateError(f"risk input order: unknown version {body.get('v')!r}")
            self.progress = {int(p): int(ts) for p, ts in body["progress"].items()}
            held = body["held"]
            self._heap = [(int(ts), int(rank), str(ident), str(value).encode()) for ts, rank, ident, value in held]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateError(f"risk input order: not a valid record ({type(exc).__name__}: {exc})") from None
        heapq.heapify(self._heap)
