"""The ingest processor: raw Polygon frames -> parsed, de-duplicated, gap-repaired Avro records in Kafka.

One thread owns parsing and producing, so records of a symbol reach Kafka in the order the venue
sent them, with repaired events placed before the first live event after the gap. The WebSocket
reader (connectors.polygon.ws) only enqueues.

Gaps are detected when a new connection starts (reconnect), when the process starts with history in
Kafka (restart), and when consecutive events of a symbol are further apart than the configured
thresholds (time). Each is repaired from REST, de-duplicated against what was already published,
and recorded in ``ingest_gaps`` (status ``unrepaired`` with the error if REST could not deliver).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from kafkaio.collector import CollectorTuning
from kafkaio.errors import SerializationError
from kafkaio.producer import AvroProducer
from schemas.serde import ENCODE_ERRORS, FieldEncoder
from schemas.topics import BARS_1M, MARKET_QUOTES, MARKET_TRADES, OPTIONS_CHAIN

from . import parsing
from .dedupe import SeenIndex
from .options import OptionsPoller
from .repair import KIND, GapRepair
from .rest import PolygonRest
from .settings import PolygonSettings
from .ws import Frame, PolygonStream, StreamEnded

log = logging.getLogger(__name__)
# Polygon event type -> (topic, parser)
_ROUTES: dict[object, tuple[str, Callable[[dict[str, Any], int], dict[str, Any]]]] = {
    "T": (MARKET_TRADES, parsing.ws_trade),
    "Q": (MARKET_QUOTES, parsing.ws_quote),
    "AM": (BARS_1M, parsing.ws_minute_bar),
}


@dataclass(frozen=True, slots=True)
class _Direct:
    """How events of one type are published as they arrive (IngestPipeline._events)."""

    topic: str
    physical: str  # the topic's prefixed name
    encoder: FieldEncoder  # the topic's schema read from the event's own keys
    trades: bool


_DIRECT = {
    "T": (MARKET_TRADES, parsing.WS_TRADE_KEYS, parsing.WS_TRADE_DEFAULTS),
    "Q": (MARKET_QUOTES, parsing.WS_QUOTE_KEYS, parsing.WS_QUOTE_DEFAULTS),
}


@dataclass
class IngestStats:
    frames: int = 0
    events: int = 0
    published: dict[str, int] = field(default_factory=lambda: {t: 0 for t in KIND})
    duplicates: int = 0
    dead_letters: int = 0
    repaired: int = 0
    gaps: int = 0
    unrepaired: int = 0
    options: int = 0
    connections: int = 0
    ignored: int = 0


class IngestPipeline(GapRepair):
    def __init__(
        self,
        settings: PolygonSettings,
        symbols: list[str],
        producer: AvroProducer,
        *,
        options: bool = False,
        clock: parsing.IngestClock | None = None,
        options_as_of: bool = False,
        wall_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.settings = settings
        self.symbols = [s.upper() for s in symbols]
        self.subscribed = set(self.symbols)
        self.producer = producer
        self.clock = clock or parsing.IngestClock()
        self.wall_ns = wall_ns
        self.queue: queue.Queue[object] = queue.Queue()
        self.stream = PolygonStream(settings, self.symbols, self.queue, clock_ns=wall_ns)
        self.rest = PolygonRest(settings, clock_ns=wall_ns)
        self.index = SeenIndex(int(settings.dedupe_window_s * 1e9))
        self.stats = IngestStats()
        self.pending: dict[tuple[str, str], tuple[int, str]] = {}  # (topic, symbol) -> (from_ns, reason)
        self.connection = 0
        self.last_price: dict[str, float] = {}
        self.venue = parsing.VenueClock(settings.max_event_ahead_s, self.clock.simulated_latency_ns is not None)
        self._horizon = self.venue.NONE  # events later than this are outliers (set per frame)
        self.options = (
            OptionsPoller(
                settings,
                self.rest,
                as_of=options_as_of,
                dead_letter=lambda row, why: self._dead_letter(OPTIONS_CHAIN, orjson.dumps(row, default=str), why),
            )
            if options
            else None
        )
        self._stopping = threading.Event()
        self.collector = CollectorTuning(settings.gc_thresholds, settings.gc_full_interval_s)  # tune_gc()
        self._warned: set[str] = set()
        self._direct_routes: dict[str, _Direct] = {}  # made on the first frame (registers the schemas)
        self._gap_thresholds = {
            MARKET_TRADES: int(settings.trade_gap_s * 1e9),
            MARKET_QUOTES: int(settings.quote_gap_s * 1e9),
            BARS_1M: 0,
        }

    # --- lifecycle -------------------------------------------------------------------------------

    def warm_start(self, history: Iterator[tuple[str, dict[str, Any]]]) -> int:
        """Seed de-duplication and gap detection from records already in Kafka (topic, record)."""
        count = 0
        for topic, record in history:
            if record.get("symbol") in self.subscribed and topic in KIND:
                self.index.add(topic, record)
                count += 1
        for (topic, symbol), track in self.index.tracks.items():
            if track.last_ts is not None:
                self.pending[(topic, symbol)] = (track.last_ts, "restart")
        return count

    def tune_gc(self) -> None:
        """For a process that runs this pipeline and little else (`scalp ingest`, the bench), after the warm
        start: what exists now (modules, clients, the warm-start index) is frozen out of the collector's reach
        and its thresholds are raised (``settings.gc_thresholds``); the run loop makes a full collection every
        ``settings.gc_full_interval_s``."""
        self.collector.freeze()

    def stop(self) -> None:
        """The lifecycle's stop (kafkaio.lifecycle): see :meth:`request_stop`."""
        self.request_stop()

    def request_stop(self) -> None:
        """Stop reading; the queue is drained and the producer flushed before run() returns."""
        if not self._stopping.is_set():
            log.info("stopping: draining %d queued frames", self.queue.qsize())
            self._stopping.set()
            threading.Thread(target=self.stream.stop, name="polygon-ws-stop", daemon=True).start()

    def run(self, report_every_s: float = 10.0) -> IngestStats:
        with self.producer.serving_deliveries():
            return self._run(report_every_s)

    def _run(self, report_every_s: float) -> IngestStats:
        self.stream.start()
        next_report = time.monotonic() + report_every_s
        try:
            while True:
                try:
                    item = self.queue.get(timeout=0.5)
                except queue.Empty:
                    item = None
                if isinstance(item, Frame):
                    self._frame(item)
                elif isinstance(item, StreamEnded):
                    if item.error is not None:
                        raise item.error
                    break
                self.producer.poll(0)
                self.producer.check()
                if time.monotonic() >= next_report:
                    next_report = time.monotonic() + report_every_s
                    self._report()
                self.collector.maybe_collect()
        finally:
            if self.stream.session_ended or self._stopping.is_set():
                log.info("flushing the producer")
            self.producer.flush()
            self.stats.connections = self.stream.connections
            self._report()
        return self.stats

    def _report(self) -> None:
        s = self.stats
        log.info(
            "ingest: %d events, published %s, %d duplicates dropped, %d dead letters, %d gaps "
            "(%d unrepaired, %d events recovered), %d option rows, queue %d",
            s.events,
            s.published,
            s.duplicates,
            s.dead_letters,
            s.gaps,
            s.unrepaired,
            s.repaired,
            s.options,
            self.queue.qsize(),
        )

    # --- frames and events -----------------------------------------------------------------------

    def _frame(self, frame: Frame) -> None:
        self.stats.frames += 1
        if frame.connection != self.connection:
            if self.connection != 0:
                for (topic, symbol), track in self.index.tracks.items():
                    if track.last_ts is not None and (topic, symbol) not in self.pending:
                        self.pending[(topic, symbol)] = (track.last_ts, "reconnect")
                log.warning("new Polygon connection %d: gaps will be repaired from REST", frame.connection)
            self.connection = frame.connection
        try:
            events = orjson.loads(frame.data)
        except orjson.JSONDecodeError as exc:
            raw = frame.data.encode() if isinstance(frame.data, str) else frame.data
            self._dead_letter(MARKET_TRADES, raw, f"frame is not JSON: {exc}")
            return
        if not isinstance(events, list):
            events = [events]
        self._horizon = self.venue.horizon(frame.receipt_ns)
        self._events(events, frame.receipt_ns)

    def _make_direct_routes(self) -> dict[str, _Direct]:
        for ev, (topic, keys, defaults) in _DIRECT.items():
            encoder = self.producer.serde.field_encoder(topic, keys, defaults, parsing.WS_CONSTANTS)
            self._direct_routes[ev] = _Direct(topic, self.producer.physical(topic), encoder, topic == MARKET_TRADES)
        return self._direct_routes

    def _events(self, events: list[Any], receipt_ns: int) -> None:
        """The hot path. A T or Q event is published without building its record: the topic's schema is
        encoded from the event's own keys (parsing.WS_TRADE_KEYS), which gives the bytes _event() would for
        about 60% of the cost of building and encoding the record. Anything out of the ordinary (a field
        missing or of another type, another event type, an unsubscribed symbol, a gap pending or to check)
        goes through _event(), unchanged, which names the problem and repairs gaps. Names used per event
        are bound once per frame."""
        routes = self._direct_routes or self._make_direct_routes()
        subscribed = self.subscribed
        tracks = self.index.tracks
        add_key = self.index.add_key
        gap_ns = self._gap_thresholds
        latency = self.clock.simulated_latency_ns
        send = self.producer.send
        produce = self.producer.raw_produce()  # the run loop polls once per frame
        last_price = self.last_price
        options = self.options
        stats = self.stats
        published = stats.published
        ts_key = parsing.TS_KEY
        ts_ingest_key = parsing.TS_INGEST_KEY
        ms = parsing.MS
        pending = self.pending
        horizon = self._horizon
        before = self.venue.venue_ns
        latest = -(1 << 63) if before is None else before
        for event in events:
            if type(event) is not dict:
                self._event(event, receipt_ns)
                continue
            ev = event.get("ev")
            route = routes.get(ev) if type(ev) is str else None
            sym = event.get("sym")
            t = event.get("t")
            if route is None or type(t) is not int or type(sym) is not str or sym not in subscribed:
                self._event(event, receipt_ns)
                continue
            ts = t * ms
            topic = route.topic
            if (pending and (topic, sym) in pending) or ts > horizon:  # a gap to repair first, or an outlier
                self._event(event, receipt_ns)
                continue
            threshold = gap_ns[topic]
            if threshold:
                track = tracks.get((topic, sym))
                if track is not None and track.last_ts is not None and ts - track.last_ts > threshold:
                    self._event(event, receipt_ns)
                    continue
            try:
                seq = event["q"]
                key = (event["x"], event["i"]) if route.trades else seq
                event[ts_key] = ts
                event[ts_ingest_key] = receipt_ns if latency is None else ts + latency
                encoder = route.encoder
                value = (encoder.heads.get(sym) or encoder.head(sym)) + encoder.body(event) + encoder.tail
            except ENCODE_ERRORS:  # KeyError among them: a field missing
                event.pop(ts_key, None)
                event.pop(ts_ingest_key, None)
                self._event(event, receipt_ns)
                continue
            stats.events += 1
            if ts > latest:
                latest = ts
            if add_key(topic, sym, key, ts, seq):
                if produce is None:
                    send(route.physical, value, sym.encode(), t)
                else:
                    try:
                        produce(route.physical, value, sym.encode(), timestamp=t)
                    except BufferError:
                        send(route.physical, value, sym.encode(), t)
                published[topic] += 1
                if route.trades:
                    last_price[sym] = event["p"]
            else:
                stats.duplicates += 1
            if options is not None:
                for row in options.maybe_poll(ts, last_price):
                    self._publish_option(row)
        if latest != before and latest > -(1 << 63):
            self.venue.observe(latest)

    def _event(self, event: Any, receipt_ns: int) -> None:
        ev = event.get("ev") if type(event) is dict else None
        route = _ROUTES.get(ev) if type(ev) is str else None
        if route is None:
            self._other_event(event)
            return
        topic, parse = route
        self.stats.events += 1
        try:
            record = parse(event, receipt_ns)
        except parsing.ParseError as exc:
            self._dead_letter(topic, orjson.dumps(event), str(exc), event.get("sym"))
            return
        symbol = record["symbol"]
        if type(symbol) is not str:
            self._dead_letter(topic, orjson.dumps(event), f"{ev}.sym: expected a string")
            return
        if symbol not in self.subscribed:
            self.stats.ignored += 1
            self._warn_once(f"sym:{symbol}", "ignoring events for unsubscribed symbol %r", symbol)
            return
        if record["ts"] > self._horizon:
            self._dead_letter(
                topic, orjson.dumps(event), self.venue.outlier(str(ev), record["ts"], self._horizon), symbol
            )
            return
        self.venue.observe(record["ts"])
        if self.clock.simulated_latency_ns is not None:
            self.clock.stamp(record, receipt_ns)
        if self.pending or self._gap_thresholds[topic]:
            self._before_publish(topic, symbol, record)
        if self._publish(topic, record, event) and topic == MARKET_TRADES:
            self.last_price[symbol] = record["price"]
        if self.options is not None:
            for row in self.options.maybe_poll(record["ts"], self.last_price):
                self._publish_option(row)

    def _other_event(self, event: Any) -> None:
        """Status messages; anything that is not a subscribed event type is counted and warned about once."""
        ev = event.get("ev") if isinstance(event, dict) else None
        if ev == "status":
            parsing.log_status(event)
            return
        self.stats.ignored += 1
        self._warn_once(f"ev:{ev}", "ignoring unsubscribed event type %r", ev)

    def _publish(self, topic: str, record: dict[str, Any], raw: Any) -> bool:
        """Encode (a record that does not fit its schema goes to the DLQ, and is not remembered as seen),
        drop it if already published, else send it."""
        try:
            value = self.producer.serde.encode(topic, record)
        except SerializationError as exc:
            self._dead_letter(topic, orjson.dumps(raw), str(exc), record.get("symbol"))
            return False
        if not self.index.add_new(topic, record):
            self.stats.duplicates += 1
            return False
        self.producer.produce_encoded(topic, record, value)
        self.stats.published[topic] += 1
        return True

    def _publish_option(self, record: dict[str, Any]) -> None:
        self.clock.stamp(record, self.wall_ns())
        try:
            self.producer.produce(OPTIONS_CHAIN, record)
            self.stats.options += 1
        except SerializationError as exc:
            self._dead_letter(OPTIONS_CHAIN, orjson.dumps(record, default=str), str(exc), record.get("contract_symbol"))

    def _dead_letter(self, topic: str, raw: bytes, reason: str, key: str | None = None) -> None:
        self.stats.dead_letters += 1
        self.producer.produce_dlq(
            topic,
            raw,
            reason,
            key=key.encode() if isinstance(key, str) else None,
            headers=[("connection", str(self.connection).encode())],
        )

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message + " (further occurrences are counted, not logged)", *args)
