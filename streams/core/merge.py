"""Event-time merge of a symbol's trades and quotes, which arrive on two topics.

Kafka orders each topic's partition but not the two topics against each other, and a consumer may fetch
one far ahead of the other (always so in a replay). The strategy must see one order, the same live, in a
replay and whatever the number of workers: events are released in (ts, seq, kind) order once both streams
have passed that time. Each stream's *watermark* is the newest event time it brought, raised by a *floor*
the caller may give: the time its partition has reached (the newest event time read from that partition,
any symbol) less a grace. A stream that is quiet for a symbol (no trades for a while, quotes going on) is
then not waited for longer than the grace of venue time, and nothing but the inputs decides when: an
event is released only when no later input can sort before it.

An event older than its stream's watermark when it arrives (older than an event of its stream already
read, or older than the floor) is *late*: it cannot take its place without changing what was released,
so it is not applied. It is kept in place as a marker (released as :class:`Late` around its payload: the
caller acknowledges its input), which keeps each stream's inputs released in the order they were read.
Whether an event is late depends only on what was read before it on its own partition, so it is late in
every run.

``drain()`` releases everything (the end of input). Without floors (a replay, which reads the records in
event-time order) nothing is late and the order is that of the fully sorted input.
"""

from __future__ import annotations

import heapq
from typing import Any

TRADE, QUOTE = "t", "q"  # kind tags; at an equal (ts, seq) a quote sorts before a trade
NO_FLOOR = -1


class Late:
    """A late event's place in the merge: released in its stream's order, not to be applied."""

    __slots__ = ("payload",)

    def __init__(self, payload: Any) -> None:
        self.payload = payload


class Merger:
    __slots__ = ("_heap", "_n", "_quotes_high", "_trades_high")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, str, int, Any]] = []
        self._n = 0
        self._trades_high = NO_FLOOR  # each stream's watermark (newest event time, raised by the floors)
        self._quotes_high = NO_FLOOR

    def push(self, kind: str, ts: int, seq: int, payload: Any, floor: int = NO_FLOOR) -> bool:
        """Hold an event; False when it is late (held as a :class:`Late` marker: see the module).
        ``floor``: the stream's floor as of this event (its partition's time less the grace)."""
        if kind == QUOTE:
            rank = "0"
            high = self._quotes_high if self._quotes_high > floor else floor
            on_time = ts >= high
            self._quotes_high = ts if on_time else high
        else:
            rank = "1"
            high = self._trades_high if self._trades_high > floor else floor
            on_time = ts >= high
            self._trades_high = ts if on_time else high
        self._n += 1  # arrival order breaks remaining ties: within a topic that is the venue order
        if on_time:
            heapq.heappush(self._heap, (ts, seq, rank, self._n, payload))
        else:  # in place of the event: after everything its stream brought before it
            heapq.heappush(self._heap, (high, seq, rank, self._n, Late(payload)))
        return on_time

    def pop_ready(self, trades_floor: int = NO_FLOOR, quotes_floor: int = NO_FLOOR) -> list[tuple[str, Any]]:
        """Events older than both streams' watermarks, in order (an equal time may still get company).
        The floors raise the watermarks: the streams' partitions' times less the grace, as of now."""
        if trades_floor > self._trades_high:
            self._trades_high = trades_floor
        if quotes_floor > self._quotes_high:
            self._quotes_high = quotes_floor
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
        """The stream the merge is waiting for (the one with the older watermark)."""
        return TRADE if self._trades_high <= self._quotes_high else QUOTE

    def __len__(self) -> int:
        return len(self._heap)
