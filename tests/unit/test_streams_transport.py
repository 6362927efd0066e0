"""The Faust app of `scalp streams`: its worker consumer waits at most our fetch wait (not Faust's fixed 1500 ms),
holds a fetch back for records not taken only as long as configured (not aiokafka's 100 ms), and hands the
records of the batch topics to a handler one fetch at a time, under Faust's flow rules."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP

from streams.transport import App, BatchConsumer


def _worker_consumer(app: App) -> object:
    async def build() -> object:
        thread = app.consumer._thread  # type: ignore[attr-defined]
        return thread._create_worker_consumer(app.transport)

    return asyncio.run(build())


def test_the_worker_consumer_waits_at_most_the_configured_time() -> None:
    app = App("transport-test", broker="kafka://127.0.0.1:9", store="memory://", fetch_max_wait_ms=37)
    consumer = _worker_consumer(app)
    assert consumer._fetch_max_wait_ms == 37  # type: ignore[attr-defined]


def test_without_a_setting_faust_keeps_its_own_wait() -> None:
    app = App("transport-test-default", broker="kafka://127.0.0.1:9", store="memory://")
    assert _worker_consumer(app)._fetch_max_wait_ms == 1500  # type: ignore[attr-defined]


def test_the_started_fetcher_gets_the_configured_prefetch_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    from faust.transport.drivers import aiokafka as driver

    class Fetcher:
        _prefetch_backoff = 0.1  # aiokafka's default: records not taken hold back their broker's next fetch

    class Started:
        def __init__(self) -> None:
            self._fetcher = Fetcher()

    async def started(self: Any) -> None:
        self._consumer = Started()

    monkeypatch.setattr(driver.AIOKafkaConsumerThread, "on_start", started)
    for backoff_ms, seconds in ((7, 0.007), (None, 0.1)):
        app = App(f"transport-test-{backoff_ms}", broker="kafka://127.0.0.1:9", store="memory://",
                  prefetch_backoff_ms=backoff_ms)  # fmt: skip
        thread = app.consumer._thread  # type: ignore[attr-defined]
        asyncio.run(thread.on_start())
        assert thread._consumer._fetcher._prefetch_backoff == seconds
    del Fetcher._prefetch_backoff  # an aiokafka without the attribute is an error, not a silent no-op
    app = App("transport-test-missing", broker="kafka://127.0.0.1:9", store="memory://", prefetch_backoff_ms=5)
    with pytest.raises(RuntimeError, match="_prefetch_backoff"):
        asyncio.run(app.consumer._thread.on_start())  # type: ignore[attr-defined]


def test_the_high_water_mark_of_a_partition_taken_away_is_unknown_not_a_crash() -> None:
    # aiokafka's consumer asserts that a partition is assigned before it answers; in a rebalance Faust's view of
    # the assignment trails it, and a worker that asked for a partition just taken away crashed
    from aiokafka.structs import TopicPartition

    app = App("transport-test-highwater", broker="kafka://127.0.0.1:9", store="memory://")
    thread = app.consumer._thread  # type: ignore[attr-defined]
    kept, taken = TopicPartition("quotes", 0), TopicPartition("quotes", 1)

    async def build() -> Any:
        consumer = thread._create_worker_consumer(app.transport)  # the real aiokafka consumer, not started
        consumer.assign([kept])
        return consumer

    consumer = asyncio.run(build())
    thread._consumer = consumer
    with pytest.raises(AssertionError, match="not assigned"):
        consumer.highwater(taken)
    assert app.consumer.highwater(TP("quotes", 1)) is None  # taken away: not known
    assert app.consumer.highwater(TP("quotes", 0)) is None  # assigned, not fetched yet: not known either
    consumer._subscription._assigned_state(kept).highwater = 42  # what a fetch records
    assert app.consumer.highwater(TP("quotes", 0)) == 42


# --- the batch path --------------------------------------------------------------------------------------


class _Record:
    def __init__(self, offset: int) -> None:
        self.offset, self.key, self.value = offset, b"SPY", b"v%d" % offset


def _batch_consumer(name: str) -> tuple[Any, list[dict[TP, list[Any]]]]:
    app = App(name, broker="kafka://127.0.0.1:9", store="memory://")
    handed: list[dict[TP, list[Any]]] = []

    async def handler(batch: dict[TP, list[Any]]) -> None:
        handed.append(batch)

    app.batch_topics(app.topic("trades", "quotes"), handler)
    return app.consumer, handed


def _fetch(consumer: Any, records: dict[TP, list[Any]], active: set[TP], monkeypatch: pytest.MonkeyPatch) -> Any:
    async def parent(self: Any, wait: float) -> tuple[Any, Any]:
        return dict(records), active

    monkeypatch.setattr(FaustConsumer, "_wait_next_records", parent)
    monkeypatch.setattr(type(consumer), "highwater", lambda self, tp: 100)
    return asyncio.run(consumer._wait_next_records(1.0))


def test_batch_topics_go_to_the_handler_and_the_rest_to_faust(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer, handed = _batch_consumer("batch-split")
    assert isinstance(consumer, BatchConsumer)
    trades, quotes, ledger = TP("trades", 0), TP("quotes", 1), TP("ledger", 0)
    records = {trades: [_Record(5), _Record(6)], quotes: [_Record(9)], ledger: [_Record(1)]}
    rest, _ = _fetch(consumer, records, {trades, quotes, ledger}, monkeypatch)
    assert handed == [{trades: records[trades], quotes: records[quotes]}]
    assert rest == {ledger: records[ledger]}  # Faust iterates over these message by message
    assert consumer._read_offset[trades] == 6
    assert consumer._read_offset[quotes] == 9


def test_a_handed_batch_counts_as_its_partitions_stream_taking_input(monkeypatch: pytest.MonkeyPatch) -> None:
    # Faust's liveness check logs "Stream has not started processing" as an error for a partition with records
    # behind it and no inbound time: the handler's records never pass through a stream, so the batch path sets it
    consumer, _ = _batch_consumer("batch-inbound")
    inbound = consumer.app.monitor.stream_inbound_time
    trades, quotes, ledger = TP("trades", 0), TP("quotes", 0), TP("ledger", 0)
    before = time.monotonic()
    _fetch(consumer, {trades: [_Record(1)], quotes: [_Record(2)], ledger: [_Record(3)]}, {trades, ledger}, monkeypatch)
    assert inbound[trades] >= before
    assert quotes not in inbound  # paused: nothing handed out
    assert ledger not in inbound  # Faust's own stream sets it when its agent takes the record


def test_nothing_is_handed_out_while_the_flow_is_suspended_or_a_partition_is_paused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer, handed = _batch_consumer("batch-flow")
    trades, quotes = TP("trades", 0), TP("quotes", 0)
    records = {trades: [_Record(1)], quotes: [_Record(2)]}
    consumer.flow_active = False  # a rebalance is under way
    assert _fetch(consumer, records, {trades, quotes}, monkeypatch)[0] == {}
    assert handed == []
    consumer.flow_active = True
    _fetch(consumer, records, {quotes}, monkeypatch)  # trades[0] paused (table recovery)
    assert handed == [{quotes: records[quotes]}]
    assert consumer._read_offset[trades] is None


def test_acknowledged_ranges_are_what_faust_commits() -> None:
    consumer, _ = _batch_consumer("batch-acks")
    tp = TP("trades", 0)
    consumer.ack_through(tp, 0, 99)
    assert consumer._filter_committable_offsets([tp]) == {tp: 100}
    consumer._committed_offset[tp] = 100
    consumer.ack_through(tp, 100, 149)
    consumer.ack_through(tp, 150, 150)
    consumer.ack_through(tp, 90, 99)  # below the committed offset: ignored
    assert consumer._filter_committable_offsets([tp]) == {tp: 151}


def test_a_failing_handler_crashes_the_app_instead_of_ending_the_fetching(monkeypatch: pytest.MonkeyPatch) -> None:
    app = App("batch-crash", broker="kafka://127.0.0.1:9", store="memory://")
    crashed: list[BaseException] = []

    async def handler(batch: dict[TP, list[Any]]) -> None:
        raise RuntimeError("broker away")

    async def crash(reason: BaseException) -> None:
        crashed.append(reason)

    app.batch_topics(app.topic("trades"), handler)
    monkeypatch.setattr(app, "crash", crash)
    trades = TP("trades", 0)
    with pytest.raises(RuntimeError, match="broker away"):
        _fetch(app.consumer, {trades: [_Record(1)]}, {trades}, monkeypatch)
    assert [str(c) for c in crashed] == ["broker away"]
    assert app.consumer._read_offset[trades] is None  # not taken
