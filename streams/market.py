"""The market input: market_trades and market_quotes records, one fetch at a time, through the symbol stage.

Each partition's records are put in sequence (streams.sequencer), decoded and pushed through the event-time
merge, the feature engine and the setups (streams.core). Inputs are acknowledged only once the state that
includes them is saved (streams.acks, :meth:`MarketInput.checkpoint`); a restored state's inputs are
skipped by offset, so a restarted or rebalanced worker continues with exactly the same state.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from faust.types import TP

from schemas.serde import AvroSerde
from schemas.topics import MARKET_QUOTES, MARKET_TRADES

from .acks import Acks
from .core.merge import QUOTE, TRADE
from .core.pipeline import SymbolStage
from .core.statecodec import StateError
from .membership import Membership
from .offsets import OffsetsClient
from .outputs import Outputs
from .riskorder import END, progress_marker
from .sequencer import Action, PartitionSequencer, TPKey
from .settings import StreamsSettings
from .state import SymbolStore
from .stats import Stats
from .transport import BatchConsumer

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Input:
    """A market input read directly from Kafka (Faust skipped over it): taken like a fetched record."""

    offset: int
    key: bytes | None
    value: bytes


class MarketInput:
    def __init__(
        self,
        settings: StreamsSettings,
        serde: AvroSerde,
        logical: dict[str, str],
        stage: SymbolStage,
        stats: Stats,
        membership: Membership,
        offsets: OffsetsClient,
        outputs: Outputs,
        sequencer: PartitionSequencer,
    ) -> None:
        self.settings = settings
        self.serde = serde
        self.logical = logical  # physical topic -> catalog topic
        self.trades_topic = next(name for name, topic in logical.items() if topic == MARKET_TRADES)
        self.stage = stage
        self.stats = stats
        self.membership = membership
        self.offsets = offsets
        self.outputs = outputs
        self.sequencer = sequencer
        self.acks = Acks()
        self.symbols = SymbolStore(stage, legacy=settings.legacy_state == "migrate")
        self.app: Any = None  # the Faust app (set when it is built)
        self.last_checkpoint = time.monotonic()
        self.taking = False  # a fetch of market records is being taken (its handler is waiting on a send)
        self.last_ts: dict[TPKey, int] = {}  # newest event time read from each market partition
        self.progress_sent: dict[int, int] = {}  # market partition -> the progress last sent for it
        self.progress_at = 0.0  # wall time of the last progress sent (monotonic)
        self.risk_marked = 0  # outputs.risk_sent when progress was last sent
        self.progress_pending = False  # a fetch's progress held back by progress_interval_ms

    def revoked(self) -> None:
        """Unsaved progress is dropped: its inputs were not acknowledged, so whoever owns the partitions now
        reads them again on top of the last saved state (same outputs again)."""
        self.stage.forget()
        self.stage.applied.clear()  # read back from the (recovered) tables when next seen
        self.symbols.forget()
        self.acks.reset()
        self.sequencer.reset()
        self.last_ts.clear()
        self.progress_sent.clear()
        self.progress_pending = False

    # --- one fetch -----------------------------------------------------------------------------------

    async def batch(self, batch: dict[TP, list[Any]]) -> None:
        """The records of one fetch of the market topics (streams.transport), each partition's in offset order;
        acknowledged by checkpoint (by offset, through the consumer)."""
        now = time.monotonic()
        if self.stats.started is None:
            self.stats.started = now
        self.taking = True  # the idle timer releases nothing meanwhile (see Streams._idle_timer)
        try:
            for tp, records in batch.items():
                await self._take((tp.topic, tp.partition), records, now)
        finally:
            self.taking = False
        await self.send_progress()
        now = time.monotonic()
        self.stats.last_activity = now
        if now - self.last_checkpoint >= self.settings.checkpoint_interval_ms / 1000:
            await self.checkpoint()

    async def _take(self, tp: TPKey, records: Sequence[Any], now: float) -> None:
        """Apply a partition's records (objects with ``offset``, ``key``, ``value``) from its next offset on."""
        generation = self.membership.generation
        seq = self.sequencer
        if not self.membership.stable() or not self.membership.owns(*tp):
            self.stats.stale += len(records)  # handed out after their partition was revoked: the new owner reads them
            return
        expected = seq.next_offset.get(tp)
        if expected is None:
            expected = await self.offsets.start_offset(*tp)
            if generation != self.membership.generation or not self.membership.stable():
                self.stats.stale += len(records)
                return
            seq.next_offset[tp] = expected
        first = records[0].offset
        if seq.given_up(tp, expected, first):
            log.warning("%s[%d]: offsets %d to %d are not in the log; going on", tp[0], tp[1], expected, first - 1)
            expected = first
        behind, records = seq.drop_behind(records, expected)
        if behind:
            # handed out a second time (now and then after Faust's recovery resumes the partitions): applied once
            self.stats.redelivered += behind
            if not records:
                return
        if records[0].offset > expected:
            filled = await self._fill(tp, expected, records, now)
            if filled is None:
                return
            records = filled
        records, rest = seq.split(records, expected)
        back, first_since_assignment = seq.take(tp, expected, records)
        if back:
            log.info("%s[%d]: back in sequence at offset %d", tp[0], tp[1], expected)
        if first_since_assignment:
            log.info("%s[%d]: first offset since the assignment %d", tp[0], tp[1], expected)
        if not await self._apply(tp, records, generation):
            return
        if generation == self.membership.generation and self.membership.stable() and self.stage.applied:
            self.mark_applied()
        if rest:  # a hole inside the fetch: the records after it are ahead of the next offset
            await self._take(tp, rest, now)

    async def _apply(self, tp: TPKey, records: Sequence[Any], generation: int) -> bool:
        """Decode the records and push them through the symbol stage; False when the partition was revoked
        meanwhile (the rest is left to its new owner)."""
        pending = self.acks.queue(tp)
        topic = self.logical[tp[0]]
        kind = TRADE if topic == MARKET_TRADES else QUOTE
        stage, waiting, symbols, membership = self.stage, self.acks.waiting, self.symbols, self.membership
        loaded, partition_of = symbols.loaded, symbols.partition_of
        decode_known, partition = self.serde.decode_known, tp[1]
        last_ts = self.last_ts
        for index, rec in enumerate(records):
            offset, value = rec.offset, rec.value
            entry: list[int | bool] = [offset, False]
            pending.append(entry)
            source = (tp[0], tp[1], offset)
            try:
                record = decode_known(value, topic)
                if record is None:  # an unseen schema id: the registry is asked in an executor
                    record = await self.decode(value, topic)
                    if generation != membership.generation or not membership.stable():  # revoked while decoding
                        self.stats.stale += len(records) - index
                        self.stats.events += index
                        return False
                symbol = record["symbol"]
                if record["ts"] > last_ts.get(tp, -1):
                    last_ts[tp] = record["ts"]
                if symbol not in loaded:
                    symbols.load(symbol)
                if stage.offsets.get(symbol, {}).get(tp, -1) >= offset:
                    self.stats.skipped += 1  # already in the restored state
                    stage.saw(kind, partition, record["ts"])  # its partition's time as if it were applied
                    entry[1] = True
                    continue
                waiting[source] = entry
                partition_of[symbol] = partition
                out = stage.push(kind, record, source)
            except StateError:  # a state record not ours to load: the worker stops (never runs on without it)
                raise
            except Exception as exc:  # one bad record must not stop the agent
                waiting.pop(source, None)
                entry[1] = True
                await self.outputs.dead_letter(topic, source, rec.key, value, exc)
                out = []
            if out:
                await self.outputs.send(out)
            if (out or entry[1]) and (generation != membership.generation or not membership.stable()):
                self.stats.stale += len(records) - index - 1
                self.stats.events += index + 1
                return False
        self.stats.events += len(records)
        return True

    async def decode(self, value: bytes, topic: str) -> dict[str, Any]:
        """Decode; a schema id not seen yet is fetched from the registry in an executor thread."""
        if self.serde.knows(value, topic):
            return self.serde.decode(value, topic)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.serde.decode, value, topic)

    # --- holes -----------------------------------------------------------------------------------------

    async def _fill(self, tp: TPKey, expected: int, records: Sequence[Any], now: float) -> list[Any] | None:
        """Records ahead of the partition's next offset (see streams.sequencer): the offsets in between are
        read directly from Kafka and returned in front of ``records``. Only if they cannot all be read is
        nothing past the hole applied or acknowledged (None): the partition is sought back to its next offset
        and read again in order."""
        offset = records[0].offset
        seq = self.sequencer
        self.stats.ahead += len(records)
        if seq.can_fill(tp, expected, offset):
            generation = self.membership.generation
            got = await self.offsets.read_range(tp[0], tp[1], expected, offset)
            stale = generation != self.membership.generation or not self.membership.stable()
            if stale or seq.next_offset.get(tp) != expected:
                self.stats.stale += len(records)  # revoked while reading: the new owner reads the partition
                return None
            if seq.fills((o for o, _, _ in got), expected, offset):
                log.warning(
                    "%s[%d]: offset %d handed out before %d (an old fetch position); %d inputs in between read "
                    "directly", tp[0], tp[1], offset, expected, len(got),
                )  # fmt: skip
                self.stats.filled += len(got)
                return [Input(o, k, v) for o, k, v in got] + list(records)
        wait = seq.wait(tp, now)
        if wait.new:
            log.warning(
                "%s[%d]: offset %d handed out before %d (an old fetch position); seeking back to %d",
                tp[0], tp[1], offset, expected, expected,
            )  # fmt: skip
        if wait.seek_due:
            await self._seek_back(tp, expected, now)
        return None

    async def _seek_back(self, tp: TPKey, expected: int, now: float) -> None:
        if not self.sequencer.seeking(tp, now):  # back in sequence (or revoked) meanwhile
            return
        self.stats.seeks += 1
        # in the consumer's thread; Faust's read offset is set too, so the offsets in between are not
        # dropped as already read
        try:
            await self.app.consumer.seek_wait({TP(tp[0], tp[1]): expected})
        except Exception as exc:  # revoked meanwhile, or the broker is away: the timer tries again
            log.warning("%s[%d]: seek to %d failed: %s", tp[0], tp[1], expected, exc)

    async def resequence(self, now: float) -> None:
        """Seek partitions still waiting for their next offset back to it again (Faust's fetch loop can
        hand out more records of the old position after a seek, and record them as read). If that has not
        helped within RESTART_AFTER_S, the worker stops cleanly and starts again (``scalp streams``
        re-executes itself): a fresh consumer starts at the committed offset, the way a restart after a
        crash does, which gives exactly the same state."""
        seq = self.sequencer
        for tp in list(seq.ahead_since):
            action = seq.decide(tp, now)
            if action is Action.RESTART:
                log.warning("%s: stopping to start again from the committed offsets", seq.restart_reason)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            if action is Action.SEEK:
                await self._seek_back(tp, seq.next_offset[tp], now)

    # --- saving and acknowledging ----------------------------------------------------------------------

    def mark_applied(self) -> None:
        self.acks.mark_applied(self.stage.applied)
        self.stage.applied.clear()

    async def checkpoint(self) -> None:
        """Save the state of every symbol that changed, then acknowledge (in offset order per partition)
        the inputs that state includes: Faust commits only acknowledged offsets, so an input is committed
        only once the state holding it is in the changelog (Faust flushes the producer before committing)."""
        if not self.membership.stable():
            return  # a rebalance began: our revocation handler drops this progress; it is read again
        trades = self.trades_topic
        for symbol in sorted(self.acks.dirty):
            self.symbols.save(symbol, lambda partition: self.membership.owns(trades, partition))
        self.acks.dirty.clear()
        consumer = cast(BatchConsumer, self.app.consumer)
        for (topic, partition), first, last in self.acks.ackable():
            consumer.ack_through(TP(topic, partition), first, last)
        self.last_checkpoint = time.monotonic()

    # --- releases without new input of the symbol ------------------------------------------------------

    async def release(self, drain: bool = False) -> None:
        """Send what the partitions' times release of held events (a symbol whose other stream is quiet:
        the floors of streams/core/merge.py, moved by other symbols' inputs; only the inputs decide it).
        ``drain``: everything held (the worker has read all its input and been idle: the end of input)."""
        # not while a batch is being taken: its records are pushed one by one, its partitions half read
        if self.taking:
            return
        generation = self.membership.generation
        if drain:
            if not self.stage.held():
                return
            self.stats.idle_drains += 1
            out = self.stage.drain()
        else:
            out = self.stage.release()
        if not self.stage.applied:
            return
        await self.outputs.send(out)
        if generation != self.membership.generation or not self.membership.stable():
            return
        self.mark_applied()
        await self.checkpoint()

    def is_market(self, tp: TP) -> bool:
        return self.logical.get(tp.topic) in (MARKET_TRADES, MARKET_QUOTES)

    async def read_to_end(self) -> bool:
        """Every assigned market partition read to its high water mark (as of the consumer's last fetch, or
        asked of Kafka for one not fetched since the assignment; a partition not read since the assignment
        counts from its committed offset). Asked only when quiet."""
        consumer = self.app.consumer
        for tp in consumer.assignment():
            if not self.is_market(tp):
                continue
            high = consumer.highwater(tp)
            if high is None:  # not fetched (yet, or paused): "not known" kept a worker with nothing to read up
                high = await self.offsets.high_water(tp.topic, tp.partition)
            taken = self.sequencer.consumed.get((tp.topic, tp.partition))
            start = taken + 1 if taken is not None else await self.offsets.start_offset(tp.topic, tp.partition)
            if start < high:
                return False
        return True

    # --- progress (streams.riskorder) ----------------------------------------------------------------

    def progress(self, idle: bool = False) -> dict[int, int]:
        """Per market partition this worker owns: the event time below which it will send no more signals
        from it (the oldest event its merge holds, the newest read from each of the partition's topics; a
        topic read to its end with nothing read yet: the newest event time read anywhere). ``idle``: quiet,
        read to the end and nothing held: the end of time. A partition it cannot bound yet is left out."""
        consumer = self.app.consumer
        owned: dict[int, list[Any]] = {}
        for tp in consumer.assignment():
            if self.is_market(tp):
                owned.setdefault(tp.partition, []).append(tp)
        held: dict[int, int] = {}
        for symbol, merger in self.stage.mergers.items():
            oldest = merger.oldest()
            partition = self.symbols.partition_of.get(symbol)
            if oldest is not None and partition is not None:
                held[partition] = min(held.get(partition, END), oldest)
        newest = max(self.last_ts.values(), default=None)
        out: dict[int, int] = {}
        for partition, tps in owned.items():
            bound: int | None = held.get(partition, END)
            for tp in tps:
                key = (tp.topic, tp.partition)
                last = self.last_ts.get(key)
                at_end = self.sequencer.read_to(key, consumer.highwater(tp))
                if idle and at_end and partition not in held:
                    continue
                last = last if last is not None else (newest if at_end else None)
                bound = None if last is None or bound is None else min(bound, last)
            if bound is not None:
                out[partition] = bound
        return out

    async def send_progress(self, idle: bool = False) -> None:
        """Progress markers for the partitions whose progress moved (after the outputs that preceded it): when
        a risk input went out since the last ones (so the risk agent can apply it without waiting), when idle,
        and otherwise at most every ``progress_interval_ms``. Fewer markers change when held inputs are
        applied, never their order."""
        if not self.membership.stable():
            return
        now = time.monotonic()
        if (
            not idle
            and self.outputs.risk_sent == self.risk_marked
            and now - self.progress_at < self.settings.progress_interval_ms / 1000
        ):
            self.progress_pending = True  # the idle timer sends it once the interval is over
            return
        self.progress_pending = False
        for partition, ts in sorted(self.progress(idle).items()):
            if self.progress_sent.get(partition) != ts:
                await self.outputs.send_risk(progress_marker(partition, ts))
                self.progress_sent[partition] = ts
        self.progress_at = now
        self.risk_marked = self.outputs.risk_sent

    def lags(self) -> list[tuple[str, int, int]]:
        """(topic, partition, records not taken yet) of each assigned market partition fetched so far (read
        from the metrics thread: a copy of the assignment, nothing awaited)."""
        consumer = getattr(self.app, "_consumer", None)  # not made here before the worker makes it
        if consumer is None:
            return []
        out = []
        for tp in list(consumer.assignment()):
            high = consumer.highwater(tp) if self.is_market(tp) else None
            taken = self.sequencer.consumed.get((tp.topic, tp.partition))
            if high is not None and taken is not None:
                out.append((tp.topic, tp.partition, high - taken - 1))
        return out

    def stall_report(self) -> str:
        """What the merge waits for: held events per symbol and each market partition's position."""
        consumer = self.app.consumer
        held = {symbol: (len(m), m.lagging()) for symbol, m in self.stage.mergers.items() if len(m)}
        consumed = self.sequencer.consumed
        positions = {
            f"{tp.topic}[{tp.partition}]": (consumed.get((tp.topic, tp.partition)), consumer.highwater(tp))
            for tp in sorted(consumer.assignment())
            if self.is_market(tp)
        }
        paused = sorted(f"{tp.topic}[{tp.partition}]" for tp in getattr(consumer, "_paused_partitions", ()))
        return (
            f"held (events, stream waited for) {held}; partitions (last offset taken, high water) {positions}; "
            f"taking a fetch: {self.taking}; waiting for an offset: {sorted(self.sequencer.ahead_since)}; "
            f"paused by Faust: {paused}"
        )
