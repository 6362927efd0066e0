"""The Faust worker (`scalp streams`): the strategy core as stream processors.

Agents:
- ``market``: market_trades + market_quotes (keyed by symbol, so workers scale by partitions), one fetch at a
  time (streams/transport.py: Faust's per-message path caps a worker at 5-8k records/s here), taken by
  streams/market.py: each partition in sequence (streams/sequencer.py), each symbol's events through the
  event-time merge, the FeatureEngine and the setups (streams/core). Outputs:
  ``features`` and ``signals`` (Avro, Confluent framing), plus risk inputs on the internal single-partition
  topic ``<app>-risk-input`` (the risk state is account-wide).
- ``risk``: risk inputs in order -> ``risk_decisions``, ``order_intents``, ``risk_day``.
- ``ledger`` and ``refusals``: ``trade_ledger`` and the ``orders`` the broker rejected (or that expired
  unsent) -> risk inputs, so realised R and released slots reach the risk module in the same order.

Trades and quotes of a symbol are merged in event time (streams/core/merge.py): an event is held until the
other stream has passed its time, or until that stream's partition (other symbols' inputs) is
``merge_grace_ms`` of venue time past it (a symbol with no trades for a while). Only the inputs decide
what is released when, so every run of the same inputs, whatever the number of workers, applies the same
events in the same order. The one release by wall clock is at the end of input: a worker that has read
everything and been quiet for ``idle_ms`` releases what its merges still hold.

The modules: app.py (this one: the Faust app, its agents, assignment and the idle timer), market.py (the
market input), sequencer.py (pure: next offsets, holes), acks.py (pure: what may be acknowledged),
state.py (tables), membership.py (rebalances), offsets.py (direct Kafka reads), outputs.py, stats.py.

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
import time
from pathlib import Path
from typing import Any

import faust

from kafkaio import clients
from kafkaio.collector import CollectorTuning
from kafkaio.errors import ConfigError
from kafkaio.settings import KafkaSettings
from schemas.catalog import Catalog
from schemas.serde import AvroSerde
from schemas.topics import (
    FEATURES,
    MARKET_QUOTES,
    MARKET_TRADES,
    ORDER_INTENTS,
    ORDERS,
    RISK_DAY,
    RISK_DECISIONS,
    SIGNALS,
    TRADE_LEDGER,
)

from .core.pipeline import CoreParts, Output, SymbolStage
from .core.risk import RiskEngine
from .core.statecodec import StateError
from .market import MarketInput
from .membership import Membership
from .offsets import OffsetsClient
from .outputs import Outputs
from .sequencer import PartitionSequencer, parse_hole
from .settings import StreamsSettings
from .state import RiskState
from .stats import Stats
from .transport import App

log = logging.getLogger(__name__)
OUTPUT_TOPICS = (FEATURES, SIGNALS, RISK_DECISIONS, ORDER_INTENTS, RISK_DAY)
INPUT_TOPICS = (MARKET_TRADES, MARKET_QUOTES, TRADE_LEDGER, ORDERS)
STATE_MAX_BYTES = 16 * 1024 * 1024  # a symbol's state with many held events (a replay) can pass 1 MB
RESTART_ENV = "SCALP_STREAMS_RESTART"  # "<topic>:<partition>:<offset>:<n>": the hole that restarted us, n times
STALL_REPORT_S = 30.0  # no input for this long with events held or input left: logged (what is waited for), again
STALL_EXIT_S = 30.0  # --until-idle: stop after this long without input even with events held (logged)


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
        self.kafka = kafka
        self.settings = settings
        self.catalog = catalog
        parts.calendar.load()  # at start: loading it on the first event would stall the event loop 1-2 s
        self.stage = SymbolStage(parts, settings.merge_grace_ms)
        legacy = settings.legacy_state == "migrate"
        partitions = catalog[MARKET_TRADES].partitions
        if catalog[MARKET_QUOTES].partitions != partitions:  # a symbol's trades and quotes meet in one worker
            raise ConfigError(
                f"{MARKET_TRADES} and {MARKET_QUOTES} need the same partition count (the catalog has "
                f"{partitions} and {catalog[MARKET_QUOTES].partitions})"
            )
        engine = RiskEngine(parts.policy.risk, parts.calendar, parts.digests)
        self.risk = RiskState(engine, partitions, legacy=legacy)
        self.stats = Stats()
        self.logical = {kafka.topic(t): t for t in INPUT_TOPICS}  # physical -> catalog name
        self.membership = Membership()
        self.offsets = OffsetsClient(kafka)
        self.outputs = Outputs(serde, self.stats, {t: kafka.topic(t) for t in OUTPUT_TOPICS})
        sequencer = PartitionSequencer(parse_hole(os.environ.get(RESTART_ENV, "")))
        self.market = MarketInput(
            settings, serde, self.logical, self.stage, self.stats, self.membership, self.offsets, self.outputs,
            sequencer,
        )  # fmt: skip
        self.idle_exit_s: float | None = None
        self.assigned_at: float | None = None  # monotonic time of the last partition assignment
        self.collector = CollectorTuning(settings.gc_thresholds, settings.gc_full_interval_s)  # frozen at assignment
        self.stall_reported = 0.0  # monotonic time of the last "no input for N s" warning
        # (topic, partition) -> the last offset the ledger, refusals and risk agents took: --until-idle also
        # waits for their inputs (a worker started after a session found the ledger after it had stopped)
        self.agent_taken: dict[tuple[str, int], int] = {}
        for topic in (*OUTPUT_TOPICS, *INPUT_TOPICS):
            serde.ensure_registered(topic)  # registry I/O now, never inside an agent
        self.app = self._build(data_dir)

    @property
    def restart_reason(self) -> str | None:
        """Set when the worker must start again (see streams.sequencer)."""
        return self.market.sequencer.restart_reason

    @property
    def state_failure(self) -> str | None:
        """Set when a state record was refused (streams/core/statecodec.py): the worker stopped."""
        return self.market.symbols.failure or self.risk.failure

    @property
    def restart_env(self) -> str | None:
        """RESTART_ENV for the next start."""
        return self.market.sequencer.restart_env

    def stop(self) -> None:
        """The lifecycle's stop (kafkaio.lifecycle): Faust's worker, which runs this app in the main thread
        with its own signal handlers, drains, flushes and commits on SIGTERM."""
        os.kill(os.getpid(), signal.SIGTERM)

    # --- app -------------------------------------------------------------------------------------

    def _build(self, data_dir: Path | None) -> faust.App:
        k, s = self.kafka, self.settings
        app = App(
            f"{k.topic_prefix}{s.app_id}",
            fetch_max_wait_ms=s.fetch_max_wait_ms,
            prefetch_backoff_ms=s.prefetch_backoff_ms,
            **clients.faust_options(k),  # brokers, credentials, replication of the topics it creates
            store="memory://",
            key_serializer="raw",
            value_serializer="raw",
            web_enabled=s.web_port > 0,
            web_port=s.web_port or 6066,
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
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
            app.conf.datadir = data_dir / f"{k.topic_prefix}{s.app_id}"
        partitions = self.catalog[MARKET_TRADES].partitions
        market = app.topic(k.topic(MARKET_TRADES), k.topic(MARKET_QUOTES), internal=False)
        ledger = app.topic(k.topic(TRADE_LEDGER), internal=False)
        orders = app.topic(k.topic(ORDERS), internal=False)
        outputs = self.outputs
        outputs.app = app
        outputs.risk_topic = app.topic(f"{k.topic_prefix}{s.app_id}-risk-input", partitions=1, internal=True)
        outputs.dlq = {t: app.topic(k.topic(self.catalog[t].dlq), internal=False) for t in self.logical.values()}
        compact = {
            "cleanup.policy": "compact",
            "segment.ms": "600000",
            "min.cleanable.dirty.ratio": "0.1",
            "max.message.bytes": str(STATE_MAX_BYTES),
            **k.topic_configs(),
        }
        self.market.symbols.table = app.Table(
            "symbol-state", partitions=partitions, key_type=bytes, value_type=bytes, extra_topic_configs=compact
        )
        self.risk.table = app.Table(
            "risk-state", partitions=1, key_type=bytes, value_type=bytes, extra_topic_configs=compact
        )
        self.membership.app = self.market.app = app
        self.offsets.group = app.conf.id

        app.batch_topics(market, self.market.batch)  # one fetch at a time: see streams/transport.py
        self.agent_topics = {ledger.get_topic_name(), orders.get_topic_name(), outputs.risk_topic.get_topic_name()}
        app.agent(outputs.risk_topic, name="risk")(self._risk_agent)
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
        self.membership.assigned()
        # what exists by the first assignment (modules, the exchange calendar, Faust's services and clients)
        # lives as long as the worker: out of the collector's reach, a full collection scans only what the
        # stream allocates (it scanned the whole heap: 130-140 ms pauses every few seconds at 10k events/s,
        # the tail of the input-to-feature latency)
        self.collector.freeze()
        self.stats.last_activity = max(self.stats.last_activity, self.assigned_at)
        assigned = args[0] if args else kwargs.get("assigned")
        market = sorted(tp for tp in assigned or () if self.market.is_market(tp))
        if market and not self.offsets.connected:
            # the first start offset waited ~60 ms for the client's connections, holding up the first inputs
            asyncio.get_running_loop().run_in_executor(None, self.offsets.warm, market[0].topic, market[0].partition)

    async def _on_revoked(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        revoked = args[0] if args else kwargs.get("revoked")
        self.membership.revoking(bool(revoked))
        log.info("partitions revoked: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked or ()))
        if revoked:
            # unsaved progress is dropped: its inputs were not acknowledged, so whoever owns the
            # partitions now reads them again on top of the last saved state (same outputs again)
            self.market.revoked()
            self.risk.loaded = False

    # --- the timer -------------------------------------------------------------------------------

    async def _idle_timer(self) -> None:
        """Release what the partitions' times release, and all at the end of input; exit when idle
        (--until-idle)."""
        now = time.monotonic()
        market = self.market
        if not self.membership.stable():
            return
        if market.sequencer.ahead_since:
            await market.resequence(now)
            if not self.membership.stable() or self.restart_reason is not None:
                return
        await market.release()
        if market.progress_pending and not market.taking:
            await market.send_progress()  # what the last fetches held back (at most every progress_interval_ms)
        quiet_for = self.settings.idle_ms / 1000
        if not market.taking and now - self.stats.last_activity >= quiet_for and await market.read_to_end():
            # nothing left to read: the end of input. What the merges hold is released, and the risk inputs
            # this worker's partitions hold back may be applied
            await market.release(drain=True)
            if self.membership.stable():
                await market.send_progress(idle=True)
        if market.acks.dirty and now - market.last_checkpoint >= self.settings.checkpoint_interval_ms / 1000:
            await market.checkpoint()
        self.collector.maybe_collect()
        if self.app.in_recovery or (
            self.stats.started is None and not self.app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        ):
            # recovering the tables (after an assignment; seconds on a slow broker): not idle, so --until-idle
            # counts from when inputs can arrive (it stopped a bench worker with 0 events)
            self.stats.last_activity = now
        quiet_s = now - self.stats.last_activity
        if quiet_s >= STALL_REPORT_S and now - self.stall_reported >= STALL_REPORT_S:
            behind = not await market.read_to_end()
            if self.stage.held() or behind:
                self.stall_reported = now
                what = "events held" if self.stage.held() else "partitions not read to their end"
                log.warning("no input for %.0f s with %s: %s", quiet_s, what, market.stall_report())
        if (
            self.idle_exit_s is not None
            and (self.stats.started is not None or (self.assigned_at is not None and self._holds_all_market()))
            and quiet_s >= self.idle_exit_s
            and (
                # idle means nothing left to read, not merely nothing arriving: input that stops coming with records
                # left in the log (a fetch that stalls) is a stall (one bench run stopped after 220k of 300k)
                (
                    not self.stage.held()
                    and not market.sequencer.ahead_since
                    and await market.read_to_end()
                    and not await self._agents_behind()
                )
                or quiet_s >= max(STALL_EXIT_S, 10 * self.idle_exit_s)  # stalled: stop, and say why (below)
            )
        ):
            self.idle_exit_s = None
            await market.checkpoint()
            stuck = market.acks.stuck()
            if stuck:
                log.warning("stopping with unacknowledged inputs: %s (held: %d)", stuck, len(market.acks.waiting))
            if self.stage.held():
                log.warning("stopping with events held (read again at the next start): %s", market.stall_report())
            elif not await market.read_to_end():
                log.warning("stopping with partitions not read to their end: %s", market.stall_report())
            agents = await self._agents_behind()
            if agents:
                log.warning("stopping with agent inputs not taken (taken, start, high water): %s", agents)
            log.info("idle: stopping")
            self.stop()

    async def _agents_behind(self) -> dict[str, tuple[int | None, int, int]]:
        """The ledger, refusals and risk partitions assigned here whose agent has not taken every record (the
        high water mark asked of Kafka: Faust's consumer may not have fetched them yet): empty when done."""
        behind: dict[str, tuple[int | None, int, int]] = {}
        for tp in list(self.app.consumer.assignment()):
            if self.market.is_market(tp) or tp.topic not in self.agent_topics:
                continue
            taken = self.agent_taken.get((tp.topic, tp.partition))
            start = taken + 1 if taken is not None else await self.offsets.start_offset(tp.topic, tp.partition)
            high = await self.offsets.high_water(tp.topic, tp.partition)
            if start < high:
                behind[f"{tp.topic}[{tp.partition}]"] = (taken, start, high)
        return behind

    def _holds_all_market(self) -> bool:
        """Whether this worker owns every market partition: only then may it end a run without any input
        (a worker holding a share may be handed the rest when another worker leaves)."""
        held = sum(1 for tp in self.app.consumer.assignment() if self.market.is_market(tp))
        return held == 2 * self.catalog[MARKET_TRADES].partitions

    # --- risk ------------------------------------------------------------------------------------

    async def _risk_agent(self, stream: Any) -> None:
        risk = self.risk
        async for events in stream.take_events(self.settings.take_max, self.settings.take_within_s):
            try:
                risk.load()
            except StateError as exc:
                await self.app.crash(exc)
                return
            out: list[Output] = []
            for event in events:
                msg = event.message
                if msg.offset <= risk.offset:
                    self.stats.skipped += 1
                    self.agent_taken[(msg.topic, msg.partition)] = msg.offset
                    continue
                expected = risk.offset + 1
                if risk.offset < 0:  # nothing applied yet: the log's start (retention may have moved it)
                    expected = await self.offsets.start_offset(msg.topic, msg.partition)
                if msg.offset > expected:
                    # Faust handed out a record past a hole (an old fetch position, as on the market topics):
                    # the inputs in between are read here, directly, and applied first, in order
                    missing = await self.offsets.read_range(msg.topic, msg.partition, expected, msg.offset)
                    log.warning(
                        "%s[%d]: risk input %d handed out before %d; %d inputs in between read directly",
                        msg.topic, msg.partition, msg.offset, expected, len(missing),
                    )  # fmt: skip
                    for _offset, _key, value in missing:
                        self.stats.risk_refetched += 1
                        out.extend(risk.take(value))
                risk.offset = msg.offset
                out.extend(risk.take(event.value))
                self.agent_taken[(msg.topic, msg.partition)] = msg.offset
            await self.outputs.send(out)
            # saved even if a rebalance began meanwhile: these inputs are acknowledged by Faust's own
            # stream (not by us), so the state that holds them must reach the changelog
            risk.save()
            self.stats.last_activity = time.monotonic()

    async def _ledger_agent(self, stream: Any) -> None:
        """Closed trades and refused orders from the router, forwarded to the risk input in order."""
        async for event in stream.events():
            msg = event.message
            topic = self.logical.get(msg.topic, TRADE_LEDGER)
            try:
                record = await self.market.decode(event.value, topic)
                if topic == ORDERS:
                    if record["status"] not in ("rejected", "refused", "expired"):
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
                await self.outputs.send_risk(body)
            except Exception as exc:  # one bad record must not stop the agent
                source = (msg.topic, msg.partition, msg.offset)
                await self.outputs.dead_letter(topic, source, msg.key, event.value, exc)
            finally:
                self.agent_taken[(msg.topic, msg.partition)] = msg.offset
