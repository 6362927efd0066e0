"""Event-time merge of a symbol's trades and quotes, which arrive on two topics.

Kafka orders each topic's partition but not the two topics against each other, and a consumer may fetch
one far ahead of the other (always so in a replay). The strategy must see one order, the same live and in
a replay: events are released in (ts, seq, kind) order once both streams have passed that time (the
watermark is the older of the two streams' newest event times). ``drain()`` releases everything (end of
input, or a stream that has gone quiet: the caller decides when; see streams/app.py). Within a topic,
events arrive in order (ingest publishes in venue order per symbol), so each stream's newest time is its
watermark.
"""

from __future__ import annotations

import heapq
from typing import Any

TRADE, QUOTE = "t", "q"  # kind tags; at an equal (ts, seq) a quote sorts before a trade


class Merger:
    __slots__ = ("_heap", "_n", "_quotes_high", "_trades_high")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, str, int, Any]] = []
        self._n = 0
        self._trades_high = -1  # each stream's newest event time
        self._quotes_high = -1

    def push(self, kind: str, ts: int, seq: int, payload: Any) -> None:
        if kind == QUOTE:
            rank = "0"
            if ts > self._quotes_high:
                self._quotes_high = ts
        else:
            rank = "1"
            if ts > self._trades_high:
                self._trades_high = ts
        self._n += 1  # arrival order breaks remaining ties: within a topic that is the venue order
        heapq.heappush(self._heap, (ts, seq, rank, self._n, payload))

    def pop_ready(self) -> list[tuple[str, Any]]:
        """Events older than both streams' newest time, in order (an equal time may still get company)."""
        watermark = min(self._trades_high, self._quotes_high)
        out: list[tuple[str, Any]] = []
        heap = self._heap
        while heap and heap[0][0] < watermark:
            item = heapq.heappop(heap)
            out.append((QUOTE if item[2] == "0" else TRADE, item[4]))
        return out

    def drain(self) -> list[tuple[str, Any]]:
        out = []
        while self._heap:
            item = heapq.heappop(self._heap)
            out.append((QUOTE if item[2] == "0" else TRADE, item[4]))
        return out

    def oldest(self) -> int | None:
        """Event time of the oldest event held (None: nothing held)."""
        return self._heap[0][0] if self._heap else None

    def lagging(self) -> str:
        """The stream the merge is waiting for (the one with the older newest event)."""
        return TRADE if self._trades_high <= self._quotes_high else QUOTE

    def __len__(self) -> int:
        return len(self._heap)
