"""Which market inputs may be acknowledged: an input is acknowledged (and so, at Faust's next commit,
committed) only once the symbol state that includes it is saved to the changelog, and per partition only
in offset order. Pure bookkeeping, no Faust."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from .sequencer import TPKey

Source = tuple[str, int, int]  # (physical topic, partition, offset)


class Acks:
    def __init__(self) -> None:
        # inputs not acknowledged yet, per partition in offset order: [offset, applied?]
        self.pending: dict[TPKey, deque[list[int | bool]]] = {}
        self.waiting: dict[Source, list[int | bool]] = {}  # inputs held by the merge -> their pending entry
        self.dirty: set[str] = set()  # symbols whose state changed since the last checkpoint

    def queue(self, tp: TPKey) -> deque[list[int | bool]]:
        """The partition's pending inputs (append ``[offset, applied]`` entries in offset order)."""
        return self.pending.setdefault(tp, deque())

    def mark_applied(self, applied: list[tuple[str, Source]]) -> None:
        """Inputs the stage applied (symbol, source): done once their symbol's state is saved."""
        for symbol, source in applied:
            entry = self.waiting.pop(source, None)
            if entry is not None:
                entry[1] = True
            self.dirty.add(symbol)

    def ackable(self) -> Iterator[tuple[TPKey, int, int]]:
        """(partition, first, last) of each partition's applied inputs in front of its queue, taken off it."""
        for tp, queue in self.pending.items():
            first = last = None
            while queue and queue[0][1]:
                last = int(queue.popleft()[0])
                if first is None:
                    first = last
            if first is not None and last is not None:
                yield tp, first, last

    def stuck(self) -> dict[str, tuple[int, int]]:
        """Partitions with unacknowledged inputs: (count, first offset)."""
        return {f"{t}[{p}]": (len(q), int(q[0][0])) for (t, p), q in self.pending.items() if q}

    def reset(self) -> None:
        self.pending.clear()
        self.waiting.clear()
        self.dirty.clear()
