"""Which partitions this worker holds, and whether a rebalance is under way.

Faust drops its offset bookkeeping of revoked partitions as soon as a rebalance starts, before our
revocation handler runs: an acknowledgement made in that window would be kept for the next assignment and
could commit past inputs no saved state holds. :meth:`Membership.stable` is False in that window;
:attr:`Membership.generation` is bumped by every revocation, so work begun before one (a batch waiting on
the producer) can tell it must not touch the state afterwards.
"""

from __future__ import annotations

from typing import Any


class Membership:
    def __init__(self) -> None:
        self.app: Any = None  # the Faust app (set when it is built)
        self.generation = 0
        self.handled_rebalances = 0  # Faust's rebalancing_count when our revocation handler last ran
        self.owned: set[tuple[str, int]] = set()  # partitions known to be assigned (refreshed on a miss)

    def stable(self) -> bool:
        return bool(self.app.rebalancing_count == self.handled_rebalances)

    def owns(self, topic: str, partition: int) -> bool:
        if (topic, partition) in self.owned:
            return True
        self.owned = {(tp.topic, tp.partition) for tp in self.app.consumer.assignment()}
        return (topic, partition) in self.owned

    def assigned(self) -> None:
        self.owned = set()  # read again from the consumer when next needed

    def revoking(self, revoked: bool) -> None:
        """Our revocation handler runs: the rebalance is handled; with partitions revoked, a new generation."""
        self.handled_rebalances = self.app.rebalancing_count
        if revoked:
            self.generation += 1
            self.owned = set()
