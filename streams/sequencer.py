"""Per-partition input sequencing of the market topics: which offset comes next, and what to do when Faust
hands out something else. Pure: no Faust, no Kafka; the worker (streams.market) does the I/O it asks for.

The input topics are written without transactions, so their offsets have no holes: from the offset a
partition starts at (the group's committed offset, or the log start) the worker takes offsets one by one.
What Faust hands out can differ:

- **behind** the next offset: records handed out a second time (now and then after Faust's recovery
  resumes the partitions). Dropped, counted as redelivered.
- **ahead** of it: records fetched from an old position come first after a rebalance that hands a
  partition straight back, or at a start (Faust resumes partitions before it seeks them). Applying them
  would skip inputs. If the hole is at most :data:`FILL_MAX` offsets and the partition is not already
  waiting, the worker reads the offsets in between directly (:meth:`PartitionSequencer.fills`). Otherwise
  the partition waits (:meth:`PartitionSequencer.wait`): it is sought back to its next offset at most every
  :data:`SEEK_EVERY_S`, and if the offset has not come after :data:`RESTART_AFTER_S` the worker stops and
  starts again from the committed offsets (:meth:`PartitionSequencer.decide`).
- A hole that made the worker start again :data:`MAX_RESTARTS` times in a row is taken to be missing from
  the log (:meth:`PartitionSequencer.given_up`), and the partition goes on after it.
- A hole inside one fetch: the records up to it are taken, the rest goes round again
  (:meth:`PartitionSequencer.split`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, TypeVar

TPKey = tuple[str, int]  # (physical topic, partition)
MAX_RESTARTS = 3  # the same hole after this many restarts: the offsets are taken to be missing from the log
SEEK_EVERY_S = 0.2  # a partition waiting for its next offset is sought back to it at most this often
RESTART_AFTER_S = 10.0  # ... and if it has not come after this long, the worker starts again
FILL_MAX = 200_000  # a hole up to this many offsets is read directly from Kafka (larger: seek back, restart)


class HasOffset(Protocol):
    @property
    def offset(self) -> int: ...


R = TypeVar("R", bound=HasOffset)


class Action(Enum):
    SEEK = "seek"  # seek the partition back to its next offset
    RESTART = "restart"  # stop the worker and start again from the committed offsets


@dataclass(frozen=True)
class Wait:
    """A partition that must wait for its next offset: whether this is new (log it) and a seek is due."""

    new: bool
    seek_due: bool


def parse_hole(value: str) -> tuple[str, int]:
    """The restart marker ``<topic>:<partition>:<offset>:<n>`` as (hole, n); ("", 0) when unset or malformed."""
    hole, _, count = value.rpartition(":")
    return (hole, int(count)) if count.isdigit() else ("", 0)


def hole_id(tp: TPKey, offset: int) -> str:
    return f"{tp[0]}:{tp[1]}:{offset}"


class PartitionSequencer:
    """Next offset, last offset taken and waiting partitions, per (topic, partition)."""

    def __init__(self, previous_hole: tuple[str, int] = ("", 0)) -> None:
        """``previous_hole``: the hole that made the last start of this worker a restart, and how many times."""
        self.previous_hole = previous_hole
        self.next_offset: dict[TPKey, int] = {}
        self.consumed: dict[TPKey, int] = {}  # last offset taken
        self.ahead_since: dict[TPKey, tuple[float, float]] = {}  # (first input ahead, last seek back), monotonic
        self.restart_reason: str | None = None  # set when the worker must start again
        self.restart_env: str | None = None  # the restart marker for the next start (see parse_hole)

    def reset(self) -> None:
        """At a revocation: whoever owns the partitions next starts them from the committed offsets."""
        self.next_offset.clear()
        self.consumed.clear()
        self.ahead_since.clear()

    # --- the records of one fetch ------------------------------------------------------------------

    def given_up(self, tp: TPKey, expected: int, first: int) -> bool:
        """Whether the hole ``expected`` .. ``first - 1`` already restarted the worker MAX_RESTARTS times."""
        return first > expected and self.previous_hole == (hole_id(tp, expected), MAX_RESTARTS)

    @staticmethod
    def drop_behind(records: Sequence[R], expected: int) -> tuple[int, Sequence[R]]:
        """(number of records before ``expected``, the rest)."""
        behind = 0
        while behind < len(records) and records[behind].offset < expected:
            behind += 1
        return behind, records[behind:]

    def can_fill(self, tp: TPKey, expected: int, first: int) -> bool:
        """Whether the hole before ``first`` may be read directly (not waiting already, and not too large)."""
        return tp not in self.ahead_since and first - expected <= FILL_MAX

    @staticmethod
    def fills(read: Iterable[int], expected: int, first: int) -> bool:
        """Whether the offsets read are exactly the hole ``expected`` .. ``first - 1``."""
        return list(read) == list(range(expected, first))

    def wait(self, tp: TPKey, now: float) -> Wait:
        """The partition waits for its next offset (from ``now``, unless it already does)."""
        new = tp not in self.ahead_since
        since, last_seek = self.ahead_since.get(tp, (now, 0.0))
        self.ahead_since[tp] = (since, last_seek)
        return Wait(new, now - last_seek >= SEEK_EVERY_S)

    @staticmethod
    def split(records: Sequence[R], expected: int) -> tuple[Sequence[R], Sequence[R]]:
        """(records in sequence from ``expected``, the records after the first hole)."""
        n = 0
        while n < len(records) and records[n].offset == expected + n:
            n += 1
        return records[:n], records[n:]

    def take(self, tp: TPKey, expected: int, records: Sequence[HasOffset]) -> tuple[bool, bool]:
        """Records in sequence from ``expected`` are taken: (back in sequence after waiting, first records
        since the assignment)."""
        self.next_offset[tp] = expected + len(records)
        back = self.ahead_since.pop(tp, None) is not None
        first = tp not in self.consumed
        self.consumed[tp] = records[-1].offset
        return back, first

    # --- waiting partitions (the timer) -------------------------------------------------------------

    def decide(self, tp: TPKey, now: float) -> Action | None:
        """What a waiting partition needs now. The first RESTART sets :attr:`restart_reason` and
        :attr:`restart_env`; later ones are not asked for again."""
        waiting = self.ahead_since.get(tp)
        expected = self.next_offset.get(tp)
        if waiting is None or expected is None:  # back in sequence (or revoked) meanwhile
            return None
        since, last_seek = waiting
        if now - since >= RESTART_AFTER_S and self.restart_reason is None:
            self.restart_reason = f"{tp[0]}[{tp[1]}]: offset {expected} did not come back"
            hole = hole_id(tp, expected)
            times = self.previous_hole[1] + 1 if self.previous_hole[0] == hole else 1
            self.restart_env = f"{hole}:{times}"
            return Action.RESTART
        if now - last_seek >= SEEK_EVERY_S:
            return Action.SEEK
        return None

    def seeking(self, tp: TPKey, now: float) -> bool:
        """Record a seek back at ``now``; False when the partition no longer waits."""
        waiting = self.ahead_since.get(tp)
        if waiting is None:
            return False
        self.ahead_since[tp] = (waiting[0], now)
        return True

    # --- positions ------------------------------------------------------------------------------------

    def read_to(self, tp: TPKey, high: int | None) -> bool:
        """Whether ``tp`` has been taken up to the high water mark ``high`` (None: not fetched yet)."""
        return high is not None and self.consumed.get(tp, -1) + 1 >= high
