"""The streams worker's partition sequencer and acknowledgement bookkeeping, on fake records (no Faust, no Kafka)."""

from __future__ import annotations

from dataclasses import dataclass

from streams.acks import Acks
from streams.sequencer import (
    FILL_MAX,
    MAX_RESTARTS,
    RESTART_AFTER_S,
    SEEK_EVERY_S,
    Action,
    PartitionSequencer,
    hole_id,
    parse_hole,
)

TP = ("market_trades", 1)


@dataclass(frozen=True)
class Rec:
    offset: int


def recs(*offsets: int) -> list[Rec]:
    return [Rec(o) for o in offsets]


def test_parse_hole_reads_the_restart_marker_and_ignores_garbage() -> None:
    assert parse_hole("market_trades:1:40:2") == ("market_trades:1:40", 2)
    assert parse_hole("") == ("", 0)
    assert parse_hole("market_trades:1:40:x") == ("", 0)
    assert hole_id(TP, 40) == "market_trades:1:40"


def test_records_behind_the_next_offset_are_dropped_as_redelivered() -> None:
    behind, rest = PartitionSequencer.drop_behind(recs(3, 4, 5, 6), 5)
    assert behind == 2
    assert [r.offset for r in rest] == [5, 6]
    behind, rest = PartitionSequencer.drop_behind(recs(1, 2), 5)
    assert (behind, list(rest)) == (2, [])
    assert PartitionSequencer.drop_behind(recs(5, 6), 5)[0] == 0


def test_split_takes_records_up_to_the_first_hole() -> None:
    taken, rest = PartitionSequencer.split(recs(10, 11, 12, 14, 15), 10)
    assert [r.offset for r in taken] == [10, 11, 12]
    assert [r.offset for r in rest] == [14, 15]
    taken, rest = PartitionSequencer.split(recs(10, 11), 10)
    assert ([r.offset for r in taken], list(rest)) == ([10, 11], [])


def test_take_advances_the_next_offset_and_reports_first_and_back_in_sequence() -> None:
    seq = PartitionSequencer()
    back, first = seq.take(TP, 10, recs(10, 11, 12))
    assert (back, first) == (False, True)
    assert seq.next_offset[TP] == 13
    assert seq.consumed[TP] == 12
    back, first = seq.take(TP, 13, recs(13))
    assert (back, first) == (False, False)
    seq.wait(TP, now=1.0)
    back, _ = seq.take(TP, 14, recs(14))
    assert back is True
    assert TP not in seq.ahead_since


def test_a_hole_is_filled_directly_only_when_small_and_not_already_waiting() -> None:
    seq = PartitionSequencer()
    assert seq.can_fill(TP, 10, 20)
    assert not seq.can_fill(TP, 10, 10 + FILL_MAX + 1)
    seq.wait(TP, now=0.0)
    assert not seq.can_fill(TP, 10, 20)
    assert PartitionSequencer.fills([10, 11, 12], 10, 13)
    assert not PartitionSequencer.fills([10, 12], 10, 13)  # an offset missing (compaction): not filled
    assert not PartitionSequencer.fills([], 10, 13)


def test_waiting_is_new_once_and_asks_for_a_seek_at_most_every_interval() -> None:
    seq = PartitionSequencer()
    first = seq.wait(TP, now=5.0)
    assert first.new
    assert first.seek_due
    assert seq.seeking(TP, now=5.0)
    again = seq.wait(TP, now=5.0 + SEEK_EVERY_S / 2)
    assert not again.new
    assert not again.seek_due
    assert seq.wait(TP, now=5.0 + SEEK_EVERY_S).seek_due
    assert seq.ahead_since[TP][0] == 5.0  # waiting since the first time
    assert not seq.seeking(("market_quotes", 0), now=6.0)  # not waiting: nothing recorded


def test_decide_seeks_then_restarts_once_and_counts_the_same_hole() -> None:
    seq = PartitionSequencer(previous_hole=(hole_id(TP, 10), 1))
    seq.next_offset[TP] = 10
    assert seq.decide(TP, now=0.0) is None  # not waiting
    seq.wait(TP, now=0.0)
    seq.seeking(TP, now=0.0)
    assert seq.decide(TP, now=SEEK_EVERY_S / 2) is None
    assert seq.decide(TP, now=SEEK_EVERY_S) is Action.SEEK
    assert seq.decide(TP, now=RESTART_AFTER_S) is Action.RESTART
    assert seq.restart_reason == "market_trades[1]: offset 10 did not come back"
    assert seq.restart_env == "market_trades:1:10:2"  # the same hole as the last start: counted on
    assert seq.decide(TP, now=RESTART_AFTER_S + 1) is Action.SEEK  # asked for once only


def test_decide_counts_a_different_hole_from_one() -> None:
    seq = PartitionSequencer(previous_hole=(hole_id(TP, 99), 2))
    seq.next_offset[TP] = 10
    seq.wait(TP, now=0.0)
    assert seq.decide(TP, now=RESTART_AFTER_S) is Action.RESTART
    assert seq.restart_env == "market_trades:1:10:1"


def test_a_hole_that_restarted_the_worker_max_times_is_given_up() -> None:
    seq = PartitionSequencer(previous_hole=(hole_id(TP, 10), MAX_RESTARTS))
    assert seq.given_up(TP, 10, 15)
    assert not seq.given_up(TP, 10, 10)  # no hole
    assert not seq.given_up(TP, 11, 15)  # another hole
    assert not PartitionSequencer(previous_hole=(hole_id(TP, 10), MAX_RESTARTS - 1)).given_up(TP, 10, 15)


def test_read_to_compares_the_last_offset_taken_with_the_high_water_mark() -> None:
    seq = PartitionSequencer()
    assert not seq.read_to(TP, None)  # not fetched yet
    assert not seq.read_to(TP, 1)
    assert seq.read_to(TP, 0)  # an empty partition
    seq.take(TP, 0, recs(0, 1, 2))
    assert seq.read_to(TP, 3)
    assert not seq.read_to(TP, 4)


def test_reset_forgets_every_partition() -> None:
    seq = PartitionSequencer()
    seq.take(TP, 0, recs(0))
    seq.wait(("market_quotes", 0), now=0.0)
    seq.reset()
    assert (seq.next_offset, seq.consumed, seq.ahead_since) == ({}, {}, {})


def test_acks_acknowledge_only_the_applied_prefix_of_each_partition() -> None:
    acks = Acks()
    queue = acks.queue(TP)
    entries = {o: [o, False] for o in (5, 6, 7)}
    for offset in (5, 6, 7):
        queue.append(entries[offset])
        acks.waiting[(TP[0], TP[1], offset)] = entries[offset]
    acks.mark_applied([("SPY", (TP[0], TP[1], 5)), ("SPY", (TP[0], TP[1], 7))])
    assert acks.dirty == {"SPY"}
    assert list(acks.ackable()) == [(TP, 5, 5)]  # 6 is still held: 7 waits behind it
    assert acks.stuck() == {"market_trades[1]": (2, 6)}
    acks.mark_applied([("SPY", (TP[0], TP[1], 6))])
    assert list(acks.ackable()) == [(TP, 6, 7)]
    assert list(acks.ackable()) == []
    acks.reset()
    assert (acks.pending, acks.waiting, acks.dirty) == ({}, {}, set())
