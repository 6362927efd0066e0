"""The Faust worker (`scalp streams`): the strategy core as stream processors.

Agents:
- ``market``: market_trades + market_quotes (keyed by symbol, so workers scale by partitions), one fetch at a
  time (streams/transport.py: Faust's per-message path caps a worker at 5-8k records/s here); each symbol's
  events go through the event-time merge, the FeatureEngine and the setups (streams/core). Outputs:
  ``features`` and ``signals`` (Avro, Confluent framing), plus risk inputs on the internal single-partition
  topic ``<app>-risk-input`` (the risk state is account-wide).
- ``risk``: risk inputs in order -> ``risk_decisions``, ``order_intents``, ``risk_day``.
- ``ledger`` and ``refusals``: ``trade_ledger`` and the ``orders`` the broker rejected (or that expired
  unsent) -> risk inputs, so realised R and released slots reach the risk module in the same order.

Trades and quotes of a symbol are merged in event time (streams/core/merge.py): an event is held until the
other stream has passed its time. When one stream of a symbol is quiet (``idle_release_ms`` of wall time)
and its topic has been read to the end, the held events are released anyway (a live market with no
trades for a while); in a replay a stream is never "read to the end" mid-way, so releases cannot reorder.

State lives in Faust tables backed by changelog topics: per symbol the feature, merge and setup state with
the input offsets it includes (``<app>-symbol-state``; history of prior sessions under ``<symbol>/history``,
written only when it changes), and the risk state. Tables are written at the end of every batch, before
the batch is acknowledged, and Faust flushes the producer before it commits offsets. A restarted or
rebalanced worker recovers the tables and skips inputs its restored state already includes (offset at or
below the stored one), so it continues with exactly the same state: at-least-once delivery with
idempotent state. Outputs re-emitted after a crash are identical records with the same keys (the sinks'
unique keys absorb them).

No blocking I/O in agents: schemas are registered before the worker starts; a schema id not seen yet is
fetched from the registry in an executor thread. A record that cannot be decoded or processed goes to
``<topic>.dlq`` with its bytes and the reason, logged with symbol and ``topic[partition]@offset``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import faust
import orjson
from faust.types import TP

from kafkaio import clients, deadletter
from kafkaio.collector import CollectorTuning
from kafkaio.reader import RangeReader
from kafkaio.settings import KafkaSettings
from schemas.catalog import Catalog
from schemas.serde import AvroSerde
from streams.core.merge import QUOTE, TRADE
from streams.core.pipeline import RISK_INPUT, CoreParts, Output, SymbolStage
from streams.core.risk import Market, RiskEngine
from streams.settings import StreamsSettings
from streams.transport import App, BatchConsumer

log = logging.getLogger(__name__)
OUTPUT_TOPICS = ("features", "signals", "risk_decisions", "order_intents", "risk_day")
ACCOUNT_KEY = b"account"
STATE_MAX_BYTES = 16 * 1024 * 1024  # a symbol's state with many held events (a replay) can pass 1 MB
RESTART_ENV = "SCALP_STREAMS_RESTART"  # "<topic>:<partition>:<offset>:<n>": the hole that restarted us, n times
MAX_RESTARTS = 3  # the same hole after this many restarts: the offsets are taken to be missing from the log
SEEK_EVERY_S = 0.2  # a partition waiting for its next offset is sought back to it at most this often
RESTART_AFTER_S = 10.0  # ... and if it has not come after this long, the worker starts again
STALL_REPORT_S = 30.0  # no input for this long with events held or input left: logged (what is waited for), again
STALL_EXIT_S = 30.0  # --until-idle: stop after this long without input even with events held (logged)
FILL_MAX = 200_000  # a hole up to this many offsets is read directly from Kafka (larger: seek back, restart)


@dataclass
class Stats:
    events: int = 0
    skipped: int = 0  # inputs already included in restored state
    redelivered: int = 0  # the same input handed out twice by Faust (acknowledged, not applied twice)
    dead_letters: int = 0
    idle_releases: int = 0
    stale: int = 0  # inputs of a partition revoked while (or before) they were taken: left to the new owner
    ahead: int = 0  # inputs handed out past the partition's next offset (an old fetch position): read again
    seeks: int = 0  # seeks back to a partition's next offset after such inputs
    filled: int = 0  # inputs Faust skipped over (see ahead), read directly from Kafka and taken in order
    risk_refetched: int = 0  # risk inputs Faust skipped over, read directly from Kafka and applied in order
    outputs: dict[str, int] = field(default_factory=dict)
    last_activity: float = field(default_factory=time.monotonic)
    started: float | None = None  # monotonic time of the first event


@dataclass(slots=True)
class Input:
    """A market input read directly from Kafka (Faust skipped over it): taken like a fetched record."""

    offset: int
    key: bytes | None
    value: bytes


def _put(table: Any, key: bytes, value: bytes, partition: int) -> None:
    """Set a table key with its changelog record on ``partition``: a symbol's state (both of its keys)
    belongs to the partition its inputs come from, whatever the keys hash to, so the worker that owns
    the input partition recovers it."""
    table.data[key] = value
    table.send_changelog(partition, key, value)


class Streams:
    """The Faust app and everything its agents share (built before the worker starts)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        settings: StreamsSettings,
        serde: AvroSerde,
        catalog: Catalog,
        parts: CoreParts,
        data_dir: Path | None = None,
    ) -> None:
        """``data_dir``: where Faust keeps its local files (default: ``<app id>-data`` in the working
        directory, Faust's own default)."""
        self.data_dir = data_dir
        self.kafka = kafka
        self.settings = settings
        self.serde = serde
        self.catalog = catalog
        self.parts = parts
        parts.calendar.load()  # at start: loading it on the first event would stall the event loop 1-2 s
        self.stage = SymbolStage(parts)
        self.risk = RiskEngine(parts.policy.risk, parts.calendar, parts.digests)
        self.risk_loaded = False
        self.stats = Stats()
        self.logical = {kafka.topic(t): t for t in ("market_trades", "market_quotes", "trade_ledger", "orders")}
        self.loaded: set[str] = set()  # symbols whose state was read from the table
        self.history_written: dict[str, bytes] = {}
        self.last_push: dict[str, float] = {}  # symbol -> wall time of its last input
        self.partition_of: dict[str, int] = {}  # symbol -> its input partition (= its state's partition)
        # inputs not acknowledged yet, per (topic, partition) in offset order: [offset, applied?]
        self.pending: dict[tuple[str, int], deque[list[Any]]] = {}
        self.waiting: dict[tuple[str, int, int], list[Any]] = {}  # source -> pending entry held by the merge
        self.dirty: set[str] = set()  # symbols whose state changed since the last checkpoint
        self.last_checkpoint = time.monotonic()
        self.consumed: dict[tuple[str, int], int] = {}  # (topic, partition) -> last offset taken
        # (topic, partition) -> the next offset to take: from the committed offset at the assignment, then one
        # by one (the input topics are written without transactions, so their offsets have no holes)
        self.next_offset: dict[tuple[str, int], int] = {}
        # (topic, partition) -> (monotonic time of the first input ahead of next_offset, of the last seek back)
        self.ahead_since: dict[tuple[str, int], tuple[float, float]] = {}
        self.restart_reason: str | None = None  # set when the worker must start again (see _out_of_sequence)
        self.restart_env: str | None = None  # RESTART_ENV for the next start
        hole, _, count = os.environ.get(RESTART_ENV, "").rpartition(":")
        self.previous_hole = (hole, int(count)) if count.isdigit() else ("", 0)
        self._offsets_client: Any = None
        self._offsets_lock = threading.Lock()
        self.idle_exit_s: float | None = None
        self.assigned_at: float | None = None  # monotonic time of the last partition assignment
        # bumped by every revocation: work begun before it (a batch waiting on the producer, a message of a
        # partition that was revoked) must not touch the state or the tables afterwards
        self.generation = 0
        self.handled_rebalances = 0  # Faust's rebalancing_count when our revocation handler last ran
        self.owned: set[tuple[str, int]] = set()  # partitions known to be assigned (refreshed on a miss)
        self.collector = CollectorTuning(settings.gc_thresholds, settings.gc_full_interval_s)  # frozen at assignment
        self.stall_reported = 0.0  # monotonic time of the last "no input for N s" warning
        self.taking = False  # a fetch of market records is being taken (its handler is waiting on a send)
        for topic in (*OUTPUT_TOPICS, "market_trades", "market_quotes", "trade_ledger", "orders"):
            serde.ensure_registered(topic)  # registry I/O now, never inside an agent
        self.app = self._build()

    # --- app -------------------------------------------------------------------------------------

    def _build(self) -> faust.App:
        k, s = self.kafka, self.settings
        app = App(
            f"{k.topic_prefix}{s.app_id}",
            fetch_max_wait_ms=s.fetch_max_wait_ms,
            prefetch_backoff_ms=s.prefetch_backoff_ms,
            broker=clients.faust_broker(k),
            store="memory://",
            key_serializer="raw",
            value_serializer="raw",
            web_enabled=s.web_port > 0,
            web_port=s.web_port or 6066,
            topic_replication_factor=1,
            topic_allow_declare=True,
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=s.commit_interval_s,
            # a killed worker's partitions move after this long (Faust's default is 60 s)
            broker_session_timeout=s.session_timeout_s,
            broker_heartbeat_interval=min(3.0, s.session_timeout_s / 3),
            producer_acks=-1,
            producer_max_request_size=STATE_MAX_BYTES,
            table_standby_replicas=0,
            # inputs are acknowledged at checkpoints only: on a stop or rebalance Faust must not wait for
            # the rest (they are not committed, and whoever reads the partitions next applies them)
            stream_wait_empty=False,
        )
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
            app.conf.datadir = self.data_dir / f"{k.topic_prefix}{s.app_id}"
        partitions = self.catalog["market_trades"].partitions
        market = app.topic(k.topic("market_trades"), k.topic("market_quotes"), internal=False)
        ledger = app.topic(k.topic("trade_ledger"), internal=False)
        orders = app.topic(k.topic("orders"), internal=False)
        self.risk_topic = app.topic(f"{k.topic_prefix}{s.app_id}-risk-input", partitions=1, internal=True)
        self.output_names = {t: k.topic(t) for t in OUTPUT_TOPICS}  # sent with Faust's producer (see _send)
        self.dlq = {t: app.topic(k.topic(self.catalog[t].dlq), internal=False) for t in self.logical.values()}
        compact = {
            "cleanup.policy": "compact",
            "segment.ms": "600000",
            "min.cleanable.dirty.ratio": "0.1",
            "max.message.bytes": str(STATE_MAX_BYTES),
        }
        self.symbol_table = app.Table(
            "symbol-state", partitions=partitions, key_type=bytes, value_type=bytes, extra_topic_configs=compact
        )
        self.risk_table = app.Table(
            "risk-state", partitions=1, key_type=bytes, value_type=bytes, extra_topic_configs=compact
        )

        app.batch_topics(market, self._market_batch)  # one fetch at a time: see streams/transport.py
        app.agent(self.risk_topic, name="risk")(self._risk_agent)
        app.agent(ledger, name="ledger")(self._ledger_agent)
        app.agent(orders, name="refusals")(self._ledger_agent)
        app.timer(0.25)(self._idle_timer)
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        app.on_partitions_assigned.connect(self._on_assigned)  # type: ignore[arg-type]
        return app

    async def _on_assigned(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        # --until-idle counts from here when no input ever arrives (nothing new since the last run) and
        # this worker holds every market partition
        self.assigned_at = time.monotonic()
        self.owned = set()  # read again from the consumer when next needed
        # what exists by the first assignment (modules, the exchange calendar, Faust's services and clients)
        # lives as long as the worker: out of the collector's reach, a full collection scans only what the
        # stream allocates (it scanned the whole heap: 130-140 ms pauses every few seconds at 10k events/s,
        # the tail of the input-to-feature latency)
        self.collector.freeze()
        self.stats.last_activity = max(self.stats.last_activity, self.assigned_at)
        assigned = args[0] if args else kwargs.get("assigned")
        market = sorted(tp for tp in assigned or () if self._is_market(tp))
        if market and self._offsets_client is None:
            # the first start offset waited ~60 ms for the client's connections, holding up the first inputs
            asyncio.get_running_loop().run_in_executor(None, self._warm_offsets_client, market[0])

    def _warm_offsets_client(self, tp: TP) -> None:
        try:
            self._committed_or_earliest(tp.topic, tp.partition)
        except Exception as exc:  # the real lookup reports the problem
            log.debug("warming the offsets client failed: %s", exc)

    async def _on_revoked(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        revoked = args[0] if args else kwargs.get("revoked")
        self.handled_rebalances = self.app.rebalancing_count
        log.info("partitions revoked: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked or ()))
        if revoked:
            # unsaved progress is dropped: its inputs were not acknowledged, so whoever owns the
            # partitions now reads them again on top of the last saved state (same outputs again)
            self.generation += 1
            self.owned = set()
            self.stage.forget()
            self.stage.applied.clear()  # read back from the (recovered) tables when next seen
            self.loaded.clear()
            self.pending.clear()
            self.waiting.clear()
            self.consumed.clear()
            self.next_offset.clear()
            self.ahead_since.clear()
            self.dirty.clear()
            self.history_written.clear()
            self.risk_loaded = False

    # --- market ----------------------------------------------------------------------------------

    async def _market_batch(self, batch: dict[TP, list[Any]]) -> None:
        """The records of one fetch of the market topics (streams.transport), each partition's in offset order;
        acknowledged by _checkpoint (by offset, through the consumer)."""
        now = time.monotonic()
        if self.stats.started is None:
            self.stats.started = now
        self.taking = True  # the idle timer releases nothing meanwhile (see _idle_timer)
        try:
            for tp, records in batch.items():
                self.stats.events += len(records)
                await self._take((tp.topic, tp.partition), records, now)
        finally:
            self.taking = False
        now = time.monotonic()
        self.stats.last_activity = now
        if now - self.last_checkpoint >= self.settings.checkpoint_interval_ms / 1000:
            await self._checkpoint()

    async def _take(self, tp: tuple[str, int], records: list[Any], now: float) -> None:
        """Apply a partition's records (objects with ``offset``, ``key``, ``value``) from its next offset on."""
        generation = self.generation
        if not self._stable() or not self._owns(*tp):
            self.stats.stale += len(records)  # handed out after their partition was revoked: the new owner reads them
            return
        expected = self.next_offset.get(tp)
        if expected is None:
            expected = await self._start_offset(*tp)
            if generation != self.generation or not self._stable():
                self.stats.stale += len(records)
                return
            self.next_offset[tp] = expected
        first = records[0].offset
        if first > expected and self.previous_hole == (f"{tp[0]}:{tp[1]}:{expected}", MAX_RESTARTS):
            log.warning("%s[%d]: offsets %d to %d are not in the log; going on", tp[0], tp[1], expected, first - 1)
            expected = first
        behind = 0
        while behind < len(records) and records[behind].offset < expected:
            behind += 1
        if behind:
            # handed out a second time (now and then after Faust's recovery resumes the partitions): applied once
            self.stats.redelivered += behind
            records = records[behind:]
            if not records:
                return
        if records[0].offset > expected:
            filled = await self._fill(tp, expected, records, now)
            if filled is None:
                return
            records = filled
        in_sequence = 0
        while in_sequence < len(records) and records[in_sequence].offset == expected + in_sequence:
            in_sequence += 1
        rest = records[in_sequence:]
        if in_sequence < len(records):
            records = records[:in_sequence]
        self.next_offset[tp] = expected + len(records)
        if self.ahead_since.pop(tp, None) is not None:
            log.info("%s[%d]: back in sequence at offset %d", tp[0], tp[1], expected)
        if tp not in self.consumed:
            log.info("%s[%d]: first offset since the assignment %d", tp[0], tp[1], expected)
        self.consumed[tp] = records[-1].offset
        if not await self._apply(tp, records, generation):
            return
        if generation == self.generation and self._stable() and self.stage.applied:
            self._mark_applied()
        if rest:  # a hole inside the fetch: the records after it are ahead of the next offset
            await self._take(tp, rest, now)

    async def _apply(self, tp: tuple[str, int], records: list[Any], generation: int) -> bool:
        """Decode the records and push them through the symbol stage; False when the partition was revoked
        meanwhile (the rest is left to its new owner)."""
        pending = self.pending.setdefault(tp, deque())
        topic = self.logical[tp[0]]
        kind = TRADE if topic == "market_trades" else QUOTE
        stage, waiting, loaded, partition_of = self.stage, self.waiting, self.loaded, self.partition_of
        decode_known, partition = self.serde.decode_known, tp[1]
        touched: set[str] = set()
        try:
            for index, rec in enumerate(records):
                offset, value = rec.offset, rec.value
                entry = [offset, False]
                pending.append(entry)
                source = (tp[0], tp[1], offset)
                try:
                    record = decode_known(value, topic)
                    if record is None:  # an unseen schema id: the registry is asked in an executor
                        record = await self._decode(value, topic)
                        if generation != self.generation or not self._stable():  # revoked while decoding
                            self.stats.stale += len(records) - index
                            return False
                    symbol = record["symbol"]
                    if symbol not in loaded:
                        self._load_symbol(symbol)
                    if stage.offsets.get(symbol, {}).get(tp, -1) >= offset:
                        self.stats.skipped += 1  # already in the restored state
                        entry[1] = True
                        continue
                    waiting[source] = entry
                    partition_of[symbol] = partition
                    touched.add(symbol)
                    out = stage.push(kind, record, source)
                except Exception as exc:  # one bad record must not stop the agent
                    waiting.pop(source, None)
                    entry[1] = True
                    await self._dead_letter(topic, source, rec.key, value, exc)
                    out = []
                if out:
                    await self._send(out)
                if (out or entry[1]) and (generation != self.generation or not self._stable()):
                    self.stats.stale += len(records) - index - 1
                    return False
            return True
        finally:
            fresh = time.monotonic()  # the end of the batch: a long batch must not make its symbols look quiet
            for symbol in touched:
                self.last_push[symbol] = fresh

    async def _start_offset(self, topic: str, partition: int) -> int:
        """Where a newly assigned partition must start: the group's committed offset, or the log start when
        nothing was committed or the log starts later (retention). Asked of Kafka in an executor thread
        (Faust's own record of it is not always set when the first message arrives)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._committed_or_earliest, topic, partition)

    def _committed_or_earliest(self, topic: str, partition: int) -> int:
        from confluent_kafka import TopicPartition

        with self._offsets_lock:  # executor threads: a warm-up at the assignment, then the real lookups
            if self._offsets_client is None:
                self._offsets_client = clients.consumer(self.kafka, self.app.conf.id)
            client = self._offsets_client
            committed = client.committed([TopicPartition(topic, partition)], timeout=30)[0].offset
            earliest, _ = client.get_watermark_offsets(TopicPartition(topic, partition), timeout=30, cached=False)
        return int(max(committed, earliest, 0))

    async def _fill(self, tp: tuple[str, int], expected: int, records: list[Any], now: float) -> list[Any] | None:
        """Records ahead of the partition's next offset.

        Seen after a rebalance that hands a partition straight back to this worker, and now and then at a
        start: Faust resumes the partitions before it seeks them to the committed offsets, so records fetched
        from an old position come first. Applying them would skip inputs: the offsets in between are read
        directly from Kafka and returned in front of ``records``. Only if they cannot all be read is nothing
        past the hole applied or acknowledged (None): the partition is sought back to its next offset (see
        _resequence) and read again in order.
        """
        offset = records[0].offset
        self.stats.ahead += len(records)
        if tp not in self.ahead_since and offset - expected <= FILL_MAX:
            generation = self.generation
            loop = asyncio.get_running_loop()
            got = await loop.run_in_executor(None, self._read_range, tp[0], tp[1], expected, offset)
            if generation != self.generation or not self._stable() or self.next_offset.get(tp) != expected:
                self.stats.stale += len(records)  # revoked while reading: the new owner reads the partition
                return None
            if [o for o, _, _ in got] == list(range(expected, offset)):
                log.warning(
                    "%s[%d]: offset %d handed out before %d (an old fetch position); %d inputs in between read "
                    "directly", tp[0], tp[1], offset, expected, len(got),
                )  # fmt: skip
                self.stats.filled += len(got)
                return [Input(o, k, v) for o, k, v in got] + records
        since, last_seek = self.ahead_since.get(tp, (now, 0.0))
        if tp not in self.ahead_since:
            log.warning(
                "%s[%d]: offset %d handed out before %d (an old fetch position); seeking back to %d",
                tp[0], tp[1], offset, expected, expected,
            )  # fmt: skip
        self.ahead_since[tp] = (since, last_seek)
        if now - last_seek >= SEEK_EVERY_S:
            await self._seek_back(tp, expected, now)
        return None

    async def _seek_back(self, tp: tuple[str, int], expected: int, now: float) -> None:
        waiting = self.ahead_since.get(tp)
        if waiting is None:  # back in sequence (or revoked) meanwhile
            return
        self.ahead_since[tp] = (waiting[0], now)
        self.stats.seeks += 1
        # in the consumer's thread; Faust's read offset is set too, so the offsets in between are not
        # dropped as already read
        try:
            await self.app.consumer.seek_wait({TP(tp[0], tp[1]): expected})
        except Exception as exc:  # revoked meanwhile, or the broker is away: the timer tries again
            log.warning("%s[%d]: seek to %d failed: %s", tp[0], tp[1], expected, exc)

    async def _resequence(self, now: float) -> None:
        """Seek partitions still waiting for their next offset back to it again (Faust's fetch loop can
        hand out more records of the old position after a seek, and record them as read). If that has not
        helped within RESTART_AFTER_S, the worker stops cleanly and starts again (``scalp streams``
        re-executes itself): a fresh consumer starts at the committed offset, the way a restart after a
        crash does, which gives exactly the same state."""
        for tp, (since, last_seek) in list(self.ahead_since.items()):
            expected = self.next_offset.get(tp)
            if expected is None or tp not in self.ahead_since:  # back in sequence during an earlier seek
                continue
            if now - since >= RESTART_AFTER_S and self.restart_reason is None:
                self.restart_reason = f"{tp[0]}[{tp[1]}]: offset {expected} did not come back"
                hole = f"{tp[0]}:{tp[1]}:{expected}"
                times = self.previous_hole[1] + 1 if self.previous_hole[0] == hole else 1
                self.restart_env = f"{hole}:{times}"
                log.warning("%s: stopping to start again from the committed offsets", self.restart_reason)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            if now - last_seek >= SEEK_EVERY_S:
                await self._seek_back(tp, expected, now)

    def _stable(self) -> bool:
        """False from the moment Faust starts a rebalance until our revocation handler has run: Faust has
        already dropped its offset bookkeeping of the revoked partitions then, so an acknowledgement made
        in that window is kept for the next assignment and can commit past inputs no saved state holds."""
        return self.app.rebalancing_count == self.handled_rebalances

    def _owns(self, topic: str, partition: int) -> bool:
        if (topic, partition) in self.owned:
            return True
        self.owned = {(tp.topic, tp.partition) for tp in self.app.consumer.assignment()}
        return (topic, partition) in self.owned

    def _mark_applied(self) -> None:
        for symbol, source in self.stage.applied:
            entry = self.waiting.pop(source, None)
            if entry is not None:
                entry[1] = True
            self.dirty.add(symbol)
        self.stage.applied.clear()

    async def _checkpoint(self) -> None:
        """Save the state of every symbol that changed, then acknowledge (in offset order per partition)
        the inputs that state includes: Faust commits only acknowledged offsets, so an input is committed
        only once the state holding it is in the changelog (Faust flushes the producer before committing)."""
        if not self._stable():
            return  # a rebalance began: our revocation handler drops this progress; it is read again
        for symbol in sorted(self.dirty):
            self._save_symbol(symbol)
        self.dirty.clear()
        consumer = cast(BatchConsumer, self.app.consumer)
        for (topic, partition), queue in self.pending.items():
            first = last = None
            while queue and queue[0][1]:
                last = queue.popleft()[0]
                if first is None:
                    first = last
            if first is not None and last is not None:
                consumer.ack_through(TP(topic, partition), first, last)
        self.last_checkpoint = time.monotonic()

    async def _decode(self, value: bytes, topic: str) -> dict[str, Any]:
        if self.serde.knows(value, topic):
            return self.serde.decode(value, topic)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.serde.decode, value, topic)

    def _load_symbol(self, symbol: str) -> None:
        hot = self.symbol_table.get(symbol.encode())
        if hot is not None:
            history = self.symbol_table.get(f"{symbol}/history".encode())
            self.stage.import_state(symbol, hot, history)
            log.info("%s: state restored (offsets %s)", symbol, self.stage.offsets.get(symbol))
        self.loaded.add(symbol)

    def _save_symbol(self, symbol: str) -> None:
        partition = self.partition_of[symbol]
        if symbol not in self.loaded or not self._owns(self.kafka.topic("market_trades"), partition):
            return  # forgotten at a revocation: its state in the table is the one to keep
        hot, history = self.stage.export_state(symbol)
        if self.history_written.get(symbol) != history:
            _put(self.symbol_table, f"{symbol}/history".encode(), history, partition)
            self.history_written[symbol] = history
        _put(self.symbol_table, symbol.encode(), hot, partition)

    async def _idle_timer(self) -> None:
        """Release held events of symbols whose other stream went quiet; exit when idle (--until-idle)."""
        release_s = self.settings.idle_release_ms / 1000
        now = time.monotonic()
        if not self._stable():
            return
        if self.ahead_since:
            await self._resequence(now)
            if not self._stable() or self.restart_reason is not None:
                return
        # not while a batch is being taken: its partition counts as read to its end (consumed) before all of
        # its records are pushed, and its symbols' last push is only set at its end
        if release_s > 0 and not self.taking:
            for symbol, merger in list(self.stage.mergers.items()):
                quiet = now - self.last_push.get(symbol, now) >= release_s
                if len(merger) and quiet and self._caught_up(merger.lagging()):
                    self.stats.idle_releases += 1
                    generation = self.generation
                    await self._send(self.stage.drain(symbol))
                    if generation != self.generation or not self._stable():
                        break
                    self._mark_applied()
                    await self._checkpoint()
        if self.dirty and now - self.last_checkpoint >= self.settings.checkpoint_interval_ms / 1000:
            await self._checkpoint()
        self.collector.maybe_collect()
        if self.app.in_recovery or (
            self.stats.started is None and not self.app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        ):
            # recovering the tables (after an assignment; seconds on a slow broker): not idle, so --until-idle
            # counts from when inputs can arrive (it stopped a bench worker with 0 events)
            self.stats.last_activity = now
        quiet_s = now - self.stats.last_activity
        if quiet_s >= STALL_REPORT_S and now - self.stall_reported >= STALL_REPORT_S:
            behind = not await self._read_to_end()
            if self.stage.held() or behind:
                self.stall_reported = now
                what = "events held" if self.stage.held() else "partitions not read to their end"
                log.warning("no input for %.0f s with %s: %s", quiet_s, what, self._stall_report())
        if (
            self.idle_exit_s is not None
            and (self.stats.started is not None or (self.assigned_at is not None and self._holds_all_market()))
            and quiet_s >= self.idle_exit_s
            and (
                # idle means nothing left to read, not merely nothing arriving: input that stops coming with records
                # left in the log (a fetch that stalls) is a stall (one bench run stopped after 220k of 300k)
                (not self.stage.held() and not self.ahead_since and await self._read_to_end())
                or quiet_s >= max(STALL_EXIT_S, 10 * self.idle_exit_s)  # stalled: stop, and say why (below)
            )
        ):
            self.idle_exit_s = None
            await self._checkpoint()
            stuck = {f"{t}[{p}]": (len(q), q[0][0]) for (t, p), q in self.pending.items() if q}
            if stuck:
                log.warning("stopping with unacknowledged inputs: %s (held: %d)", stuck, len(self.waiting))
            if self.stage.held():
                log.warning("stopping with events held (read again at the next start): %s", self._stall_report())
            elif not await self._read_to_end():
                log.warning("stopping with partitions not read to their end: %s", self._stall_report())
            log.info("idle: stopping")
            os.kill(os.getpid(), signal.SIGTERM)

    def _stall_report(self) -> str:
        """What the merge waits for: held events per symbol and each market partition's position."""
        consumer = self.app.consumer
        held = {symbol: (len(m), m.lagging()) for symbol, m in self.stage.mergers.items() if len(m)}
        positions = {
            f"{tp.topic}[{tp.partition}]": (self.consumed.get((tp.topic, tp.partition)), consumer.highwater(tp))
            for tp in sorted(consumer.assignment())
            if self._is_market(tp)
        }
        return (
            f"held (events, stream waited for) {held}; partitions (last offset taken, high water) {positions}; "
            f"taking a fetch: {self.taking}; waiting for an offset: {sorted(self.ahead_since)}"
        )

    async def _read_to_end(self) -> bool:
        """Every assigned market partition read to its high water mark (as of the consumer's last fetch; a
        partition not read since the assignment counts from its committed offset; one not fetched yet is not
        read to its end). Asked only when quiet."""
        consumer = self.app.consumer
        for tp in consumer.assignment():
            if not self._is_market(tp):
                continue
            high = consumer.highwater(tp)
            if high is None:  # not fetched since the assignment: what is left is not known yet
                return False
            taken = self.consumed.get((tp.topic, tp.partition))
            start = taken + 1 if taken is not None else await self._start_offset(tp.topic, tp.partition)
            if start < high:
                return False
        return True

    def _is_market(self, tp: TP) -> bool:
        return self.logical.get(tp.topic) in ("market_trades", "market_quotes")

    def _holds_all_market(self) -> bool:
        """Whether this worker owns every market partition: only then may it end a run without any input
        (a worker holding a share may be handed the rest when another worker leaves)."""
        held = sum(1 for tp in self.app.consumer.assignment() if self._is_market(tp))
        return held == 2 * self.catalog["market_trades"].partitions

    def _caught_up(self, kind: str) -> bool:
        """True when every assigned partition of the topic of ``kind`` has been read to its end: then a
        quiet stream is really quiet, not merely behind (a replay), and releasing held events cannot
        change their order."""
        topic = self.kafka.topic("market_trades" if kind == TRADE else "market_quotes")
        consumer = self.app.consumer
        for tp in consumer.assignment():
            if tp.topic != topic:
                continue
            high = consumer.highwater(tp)
            if high is None or self.consumed.get((tp.topic, tp.partition), -1) + 1 < high:
                return False
        return True

    # --- risk ------------------------------------------------------------------------------------

    async def _risk_agent(self, stream: Any) -> None:
        async for events in stream.take_events(self.settings.take_max, self.settings.take_within_s):
            if not self.risk_loaded:
                state = self.risk_table.get(ACCOUNT_KEY)
                if state is not None:
                    self.risk.import_state(state[8:])
                    self._risk_offset = int.from_bytes(state[:8], "big", signed=True)
                else:
                    self._risk_offset = -1
                self.risk_loaded = True
            out: list[Output] = []
            for event in events:
                msg = event.message
                if msg.offset <= self._risk_offset:
                    self.stats.skipped += 1
                    continue
                expected = self._risk_offset + 1
                if self._risk_offset < 0:  # nothing applied yet: the log's start (retention may have moved it)
                    expected = await self._start_offset(msg.topic, msg.partition)
                if msg.offset > expected:
                    # Faust handed out a record past a hole (an old fetch position, as on the market topics):
                    # the inputs in between are read here, directly, and applied first, in order
                    loop = asyncio.get_running_loop()
                    missing = await loop.run_in_executor(
                        None, self._read_range, msg.topic, msg.partition, expected, msg.offset
                    )
                    log.warning(
                        "%s[%d]: risk input %d handed out before %d; %d inputs in between read directly",
                        msg.topic, msg.partition, msg.offset, expected, len(missing),
                    )  # fmt: skip
                    for _offset, _key, value in missing:
                        self.stats.risk_refetched += 1
                        out.extend(self._apply_risk(value))
                self._risk_offset = msg.offset
                out.extend(self._apply_risk(event.value))
            await self._send(out)
            # saved even if a rebalance began meanwhile: these inputs are acknowledged by Faust's own
            # stream (not by us), so the state that holds them must reach the changelog
            offset = self._risk_offset.to_bytes(8, "big", signed=True)
            _put(self.risk_table, ACCOUNT_KEY, offset + self.risk.export_state(), 0)
            self.stats.last_activity = time.monotonic()

    def _apply_risk(self, value: bytes) -> list[Output]:
        body = orjson.loads(value)
        if "ledger" in body:
            return self.risk.on_trade_closed(body["ledger"])
        if "order" in body:
            return self.risk.on_order_refused(body["order"])
        return self.risk.on_signal(body["signal"], Market.from_dict(body["market"]))

    def _read_range(self, topic: str, partition: int, start: int, end: int) -> list[tuple[int, bytes | None, bytes]]:
        """Records ``start`` <= offset < ``end`` of one partition, read with a consumer of its own (executor
        thread). Offsets that are not in the log (compaction, retention) are logged and left out."""
        with RangeReader(self.kafka, f"{self.app.conf.id}-range", timeout_s=60) as reader:
            out = [(r.offset, r.key, r.value or b"") for r in reader.read(topic, {partition: (start, end)})]
        if len(out) != end - start:
            log.warning("%s[%d]: %d of the %d records %d..%d read", topic, partition, len(out), end - start, start,
                        end - 1)  # fmt: skip
        return out

    async def _ledger_agent(self, stream: Any) -> None:
        """Closed trades and refused orders from the router, forwarded to the risk input in order."""
        async for event in stream.events():
            msg = event.message
            topic = self.logical.get(msg.topic, "trade_ledger")
            try:
                record = await self._decode(event.value, topic)
                if topic == "orders":
                    if record["status"] not in ("rejected", "expired"):
                        continue
                    body = {"order": {"ts": record["ts"], "status": record["status"], "intent_id": record["intent_id"]}}
                else:
                    body = {
                        "ledger": {
                            "ts": record["ts"],
                            "r_multiple": record["r_multiple"],
                            "intent_id": record["intent_id"],
                        }
                    }
                await self.risk_topic.send(key=ACCOUNT_KEY, value=orjson.dumps(body))
            except Exception as exc:  # one bad record must not stop the agent
                await self._dead_letter(topic, (msg.topic, msg.partition, msg.offset), msg.key, event.value, exc)

    # --- outputs ---------------------------------------------------------------------------------

    async def _send(self, out: list[Output]) -> None:
        counts = self.stats.outputs
        producer = self.app.producer
        for topic, record in out:
            if topic == RISK_INPUT:
                await self.risk_topic.send(key=ACCOUNT_KEY, value=orjson.dumps(record))
            else:
                # straight to Faust's producer (what Topic.send ends in, less a future, a channel and a lookup
                # per record): the same client, so Faust's flush before each commit covers these too
                name = self.output_names[topic]
                await producer.send(
                    name, self.serde.key(topic, record), self.serde.encode(topic, record), None, None, None
                )
            counts[topic] = counts.get(topic, 0) + 1

    async def _dead_letter(
        self, topic: str, source: tuple[str, int, int], key: bytes | None, value: bytes | None, exc: Exception
    ) -> None:
        reason = deadletter.reason_of(exc)
        name, partition, offset = source
        log.error("%s[%d]@%d: %s (to the dead-letter queue)", name, partition, offset, reason)
        self.stats.dead_letters += 1
        headers = deadletter.headers(reason, name, partition, offset)
        await self.dlq[topic].send(key=key, value=value, headers=headers)
