"""Risk inputs applied in event-time order whatever order the workers' records arrive in."""

from __future__ import annotations

import itertools

import orjson
import pytest

from streams.core.statecodec import StateError
from streams.riskorder import END, RiskOrder, progress_marker


def signal(ts: int, ident: str) -> bytes:
    return orjson.dumps({"signal": {"ts": ts, "id": ident}, "market": {}})


def ledger(ts: int, intent: str) -> bytes:
    return orjson.dumps({"ledger": {"ts": ts, "r_multiple": 1.0, "intent_id": intent}})


def marker(partition: int, ts: int) -> bytes:
    return orjson.dumps(progress_marker(partition, ts))


# two workers' appends: each worker's records stay in its own order, the two interleave in any way
WORKER_A = [signal(10, "a1"), signal(30, "a2"), marker(0, 31), signal(50, "a3"), marker(0, 51)]
WORKER_B = [signal(20, "b1"), marker(1, 25), signal(30, "b0"), signal(40, "b2"), marker(1, 60)]


def interleavings(a: list[bytes], b: list[bytes]) -> list[list[bytes]]:
    out = []
    for positions in itertools.combinations(range(len(a) + len(b)), len(a)):
        merged, ia, ib = [], iter(a), iter(b)
        for i in range(len(a) + len(b)):
            merged.append(next(ia) if i in positions else next(ib))
        out.append(merged)
    return out


def run(records: list[bytes]) -> list[str]:
    order = RiskOrder(2)
    applied = []
    for record in records:
        order.take(record)
        applied += [orjson.loads(v)["signal"]["id"] for v in order.release()]
    return applied


def test_every_interleaving_of_two_workers_applies_the_same_order() -> None:
    results = {tuple(run(records)) for records in interleavings(WORKER_A, WORKER_B)}
    assert results == {("a1", "b1", "a2", "b0", "b2", "a3")}  # by event time, then id


def test_nothing_before_every_partition_reported_and_everything_at_the_end() -> None:
    order = RiskOrder(3)
    for record in (signal(5, "x"), marker(0, 100), marker(1, 100)):
        order.take(record)
    assert order.release() == []  # partition 2 has not reported
    order.take(marker(2, 6))
    assert [orjson.loads(v)["signal"]["id"] for v in order.release()] == ["x"]
    order.take(signal(200, "y"))
    order.take(ledger(150, "i1"))
    assert order.release() == []
    for partition in range(3):
        order.take(marker(partition, END))
    released = [orjson.loads(v) for v in order.release()]
    assert [("ledger" in body) for body in released] == [True, False]  # in time order
    assert order.held() == 0
    order.take(marker(0, 10))  # new input after a quiet end lowers the watermark again
    order.take(signal(300, "z"))
    assert order.release() == []


def test_a_close_at_the_same_time_frees_its_slot_before_a_new_signal() -> None:
    order = RiskOrder(1)
    order.take(signal(10, "s"))
    order.take(ledger(10, "i"))
    order.take(marker(0, 11))
    assert ["ledger" in orjson.loads(v) for v in order.release()] == [True, False]


def test_what_is_held_survives_a_restart_and_a_bad_record_is_refused() -> None:
    order = RiskOrder(2)
    for record in (signal(10, "a"), signal(5, "b"), marker(0, 50)):
        order.take(record)
    again = RiskOrder(2)
    again.restore(order.export())
    assert again.export() == order.export()
    again.take(marker(1, 50))
    assert [orjson.loads(v)["signal"]["id"] for v in again.release()] == ["b", "a"]
    for bad in (b"not json", orjson.dumps({"v": 2}), orjson.dumps({"v": 1, "progress": {}, "held": [[1]]})):
        with pytest.raises(StateError):
            RiskOrder(2).restore(bad)
