"""Faust's aiokafka transport with a configurable fetch wait and a batch path for chosen topics.

Fetch wait: Faust builds its worker consumer with ``fetch_max_wait_ms=1500`` and no setting to change it.
aiokafka keeps one fetch request in flight per broker: while a request for partitions without new data (the
changelogs, the ledger, the risk input, a quiet market partition) waits out those 1.5 s on the broker, the
partitions whose records were just taken cannot be fetched again. On a single-node cluster every input then
waited up to 1.5 s (measured: 1.4 s median from an acknowledged input to its feature record at 2k events/s;
17 ms with a 20 ms wait). The wait is set here, on the consumer Faust creates, before it starts.

Prefetch backoff: aiokafka sends no fetch to a broker while records it fetched for any partition on it are
still waiting to be taken, for up to 100 ms (``prefetch_backoff``). Faust does not take the records of its
own tables' changelogs once they are recovered, yet they stay assigned and are fetched: the first records
the worker writes to each changelog partition were fetched and never taken, and every market partition then
went unfetched for 100 ms (the 100-150 ms tail of the input-to-feature latency in the first seconds of a
run). The backoff is set on the consumer's fetcher when it has started.

Batch path: Faust hands records to agents one message at a time (a Message object, two tasks in its drain
loop, a channel queue and the stream's iterator per record): its bare per-message path tops out at 5-8k
records/s on this machine, whatever the agent does. For the topics given to :meth:`App.batch_topics`, the
records of each fetch go to one handler per fetch instead, partition by partition in offset order, on the
worker's event loop (where the agents run). Everything else about them stays Faust's: the subscription, the
assignment, flow control during rebalances and table recovery (records of a paused or inactive partition are
never handed out), and the commits, which take the offsets the handler acknowledges with
:meth:`BatchConsumer.ack_through`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import faust
from faust.transport.drivers import aiokafka as driver
from faust.types import TP
from faust.types.tuples import ack_lock

# partition -> its records of one fetch in offset order (aiokafka ConsumerRecords: .offset, .key, .value)
BatchHandler = Callable[[dict[TP, list[Any]]], Awaitable[None]]


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            if not hasattr(consumer, "_fetch_max_wait_ms"):  # aiokafka reads it when it starts its fetcher
                raise RuntimeError("this aiokafka has no _fetch_max_wait_ms: update streams/transport.py")
            consumer._fetch_max_wait_ms = wait_ms
        return consumer

    async def on_start(self) -> None:
        await super().on_start()
        backoff_ms = getattr(self.app, "prefetch_backoff_ms", None)
        fetcher = getattr(self._consumer, "_fetcher", None)
        if backoff_ms is not None and fetcher is not None:
            if not hasattr(fetcher, "_prefetch_backoff"):  # read on every pass of aiokafka's fetch loop
                raise RuntimeError("this aiokafka's Fetcher has no _prefetch_backoff: update streams/transport.py")
            fetcher._prefetch_backoff = backoff_ms / 1000

    def highwater(self, tp: TP) -> int | None:  # type: ignore[override]  # (aiokafka's is None until a fetch)
        """The partition's high water mark as of the last fetch; None when not known: not fetched since it was
        assigned, or no longer assigned. During a rebalance Faust's view of the assignment trails aiokafka's,
        whose ``highwater`` asserts that the partition is assigned: a worker that asked in that window (its
        idle timer, with three workers starting together) crashed."""
        try:
            return super().highwater(tp)
        except AssertionError:
            return None


class BatchConsumer(driver.Consumer):
    """Faust's aiokafka consumer, with the records of the batch topics taken out of each fetch and handed
    to the batch handler before Faust iterates over the rest message by message."""

    batch_handler: BatchHandler | None = None
    batch_topic_names: frozenset[str] = frozenset()

    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _wait_next_records(self, timeout: float) -> tuple[Any, Any]:  # noqa: ASYNC109 (Faust's signature)
        records, active = await super()._wait_next_records(timeout)
        handler = self.batch_handler
        if not records or handler is None:
            return records, active
        names = self.batch_topic_names
        batch = {tp: recs for tp, recs in records.items() if tp.topic in names}
        if not batch:
            return records, active
        rest = {tp: recs for tp, recs in records.items() if tp.topic not in names}
        # Faust's own rules for handing records out (getmany): not while the flow is suspended (a rebalance),
        # only for active partitions (not paused for table recovery)
        if self.flow_active and not self.should_stop:
            take = {
                tp: recs
                for tp, recs in batch.items()
                if recs and (active is None or tp in active or tp in self._buffered_partitions)
            }
            if take:
                for tp in take:
                    high = self.highwater(tp)
                    if high is not None:
                        self.app.monitor.track_tp_end_offset(tp, high)
                try:
                    await handler(take)
                except Exception as exc:
                    # raised into Faust's fetcher, it would end the fetching and leave the worker running idle
                    self.log.exception("the batch handler failed; the worker stops: %r", exc)
                    await self.app.crash(exc)
                    raise
                # Faust's liveness check reads this as the partition's stream taking input: the handler's
                # records never pass through a stream, so Faust logged "Stream has not started processing"
                # as an error every few seconds for each market partition with records behind it
                inbound, now = self.app.monitor.stream_inbound_time, time.monotonic()
                for tp, recs in take.items():
                    self._read_offset[tp] = recs[-1].offset
                    inbound[tp] = now
        return rest, active

    def ack_through(self, tp: TP, first: int, last: int) -> None:
        """Acknowledge offsets ``first`` to ``last`` of a batch-topic partition (the handler's records are not
        Faust messages): Faust's commit then moves the partition's committed offset past ``last``, as it does
        for acknowledged messages."""
        with ack_lock:
            committed = self._committed_offset[tp]
            if committed is not None:
                first = max(first, committed)
            if first > last:
                return
            offsets = range(first, last + 1)
            index = self._acked_index[tp]
            fresh = [o for o in offsets if o not in index] if index else list(offsets)
            index.update(fresh)
            self._acked[tp].extend(fresh)
            self._n_acked += len(fresh)


class _Transport(driver.Transport):
    Consumer = BatchConsumer


class App(faust.App):
    """A Faust app whose worker consumer waits at most ``fetch_max_wait_ms`` for new data per fetch, and hands
    the records of :meth:`batch_topics` to a handler one fetch at a time."""

    def __init__(
        self, *args: Any, fetch_max_wait_ms: int | None = None, prefetch_backoff_ms: int | None = None, **kwargs: Any
    ) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.prefetch_backoff_ms = prefetch_backoff_ms
        self._batch: tuple[frozenset[str], BatchHandler] | None = None
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)

    def batch_topics(self, topic: Any, handler: BatchHandler) -> None:
        """Subscribe to ``topic`` (a Faust topic, possibly of several names) with its records going to
        ``handler`` one fetch at a time; the handler acknowledges them with ``consumer.ack_through``."""
        names: Iterable[str] = topic.topics
        self._batch = (frozenset(names), handler)
        self.topics.add(topic)

    def _new_consumer(self) -> Any:
        consumer = super()._new_consumer()
        if self._batch is not None:
            if not isinstance(consumer, BatchConsumer):
                raise RuntimeError(f"batch topics need streams.transport.BatchConsumer, not {type(consumer)}")
            consumer.batch_topic_names, consumer.batch_handler = self._batch
        return consumer
