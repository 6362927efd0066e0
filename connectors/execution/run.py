"""`scalp execute`: the router on Kafka, with the paper broker or Tradier.

Inputs are read from the start of the retained topics (``order_intents``; for paper also
``market_quotes``), not from committed group offsets: what earlier runs published (``orders``,
``fills``, ``trade_ledger``, ``account_snapshot``) is read back first, so a restarted router resumes every
trade where it stood and publishes nothing twice. With Tradier, today's broker orders are listed at
start and an intent whose tag (the signal id) is already there is adopted, never sent again.

Paper runs in event time: intents and quotes are merged by ``ts`` (quotes held ``quote_hold_ms`` behind
the newest one, and until the intents topic is read to its end), so the same topics give the same
orders and fills. Tradier runs on the broker's clock: fills come from the account stream, with
``GET /orders`` polled every ``poll_interval_s`` as the backstop (a fill seen only by polling is still
recorded, once).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from execution.paper import PaperBroker, PaperPort
from execution.router import Router
from execution.settings import ExecutionSettings
from execution.tracker import Accountant, FeeSchedule, payload_json
from kafkaio import clients
from kafkaio.deadletter import reason_of
from kafkaio.lifecycle import stop_on_signals
from kafkaio.producer import AvroProducer
from kafkaio.reader import read_topic
from kafkaio.settings import KafkaSettings
from schemas.serde import AvroSerde
from schemas.topics import ACCOUNT_SNAPSHOT, FILLS, MARKET_QUOTES, ORDER_INTENTS, ORDERS, TRADE_LEDGER
from sinks.audit import AuditWriter
from streams.core.sessions import Calendar

log = logging.getLogger("scalp.execution")
NS = 1_000_000_000
MS = 1_000_000
OUTPUTS = (ORDERS, FILLS, TRADE_LEDGER, ACCOUNT_SNAPSHOT)


def _output_key(topic: str, record: dict[str, Any]) -> tuple[Any, ...]:
    if topic == ORDERS:
        return (record["id"], record["ts"])
    if topic == ACCOUNT_SNAPSHOT:
        return (record["account_id"], record["ts"])
    return (record["id"],)


@dataclass
class Published:
    """What earlier runs wrote, read back from the output topics."""

    keys: dict[str, set[tuple[Any, ...]]]
    orders: dict[str, dict[str, Any]]  # latest snapshot per order id
    fills: list[dict[str, Any]]
    ledger: set[str]

    @staticmethod
    def read(kafka: KafkaSettings, serde: AvroSerde) -> Published:
        keys: dict[str, set[tuple[Any, ...]]] = {t: set() for t in OUTPUTS}
        orders: dict[str, dict[str, Any]] = {}
        fills: list[dict[str, Any]] = []
        ledger: set[str] = set()
        for topic in OUTPUTS:
            for record in read_topic(kafka, serde, topic):
                keys[topic].add(_output_key(topic, record))
                if topic == ORDERS:
                    old = orders.get(record["id"])
                    if old is None or record["ts"] >= old["ts"]:
                        orders[record["id"]] = record
                elif topic == FILLS:
                    fills.append(record)
                elif topic == TRADE_LEDGER:
                    ledger.add(record["id"])
        return Published(keys, orders, fills, ledger)


class Outputs:
    """Produces router records, skipping any an earlier run already published (same key)."""

    def __init__(self, producer: AvroProducer, published: Published) -> None:
        self.producer = producer
        self.published = published
        self.skipped = 0

    def __call__(self, topic: str, record: dict[str, Any]) -> None:
        key = _output_key(topic, record)
        seen = self.published.keys[topic]
        if key in seen:
            self.skipped += 1
            return
        seen.add(key)
        self.producer.produce(topic, record)


def _assign_all(consumer: Consumer, physical: str) -> list[TopicPartition]:
    meta = consumer.list_topics(physical, timeout=30)
    parts = [TopicPartition(physical, p, -2) for p in sorted(meta.topics[physical].partitions)]  # -2: beginning
    consumer.assign(parts)
    return parts


def _consumer(kafka: KafkaSettings, name: str) -> Consumer:
    return clients.consumer(kafka, f"scalp-execute-{name}", eof=True, earliest=True, quiet=True)


class CaughtUp:
    """Whether a consumer has read every assigned partition to its end, from the partition-EOF events the
    consumer reports (no broker round trip: a watermark query waits behind the consumer's long-poll fetch,
    ~0.5 s each here)."""

    def __init__(self, parts: list[TopicPartition]) -> None:
        self.at_end = {tp.partition: False for tp in parts}

    def observe(self, msgs: list[Any]) -> list[Any]:
        for msg in msgs:
            err = msg.error()
            if err is None:
                self.at_end[msg.partition() or 0] = False
            elif err.code() == KafkaError._PARTITION_EOF:
                self.at_end[msg.partition() or 0] = True
        return msgs

    def __call__(self) -> bool:
        return all(self.at_end.values())


def _decode_all(
    serde: AvroSerde, msgs: list[Any], topic: str, dead: Callable[[str, Any, Exception], None]
) -> Iterator[dict[str, Any]]:
    for msg in msgs:
        if msg.error() is not None:
            if msg.error().code() != KafkaError._PARTITION_EOF:
                log.warning("%s: %s", topic, msg.error())
            continue
        value = msg.value()
        if value is None:
            continue
        try:
            yield serde.decode(value, topic)
        except Exception as exc:
            dead(topic, msg, exc)


@dataclass
class RunResult:
    router: Router
    outputs: Outputs
    audit: AuditWriter
    late_intents: int = 0
    dead_letters: int = 0


def _dead_letters(producer: AvroProducer, result: RunResult) -> Callable[[str, Any, Exception], None]:
    def dead(topic: str, msg: Any, exc: Exception) -> None:
        result.dead_letters += 1
        source = (msg.partition(), msg.offset())
        producer.produce_dlq(topic, msg.value(), reason_of(exc), msg.key(), msg.timestamp()[1], source=source)

    return dead


def _session(calendar: Calendar, ts: int) -> str:
    where = calendar.at(ts)
    return "closed" if where is None else where[1]


# --- paper -----------------------------------------------------------------------------------------


def run_paper(
    kafka: KafkaSettings,
    serde: AvroSerde,
    settings: ExecutionSettings,
    audit: AuditWriter,
    *,
    until_idle: float | None,
    progress: Callable[[RunResult], None] | None = None,
) -> RunResult:
    broker = PaperBroker(settings.paper)
    producer = AvroProducer(kafka, serde)
    published = Published.read(kafka, serde)
    outputs = Outputs(producer, published)
    fees = FeeSchedule(settings.fees.per_share_usd, settings.fees.per_contract_usd, settings.fees.per_order_usd)
    router = Router(PaperPort(broker), Accountant(fees), outputs, audit, lambda plan: "[]")
    result = RunResult(router, outputs, audit)
    calendar = Calendar().load()  # at start, not on the first intent
    intents_c, quotes_c = _consumer(kafka, "paper-intents"), _consumer(kafka, "paper-quotes")
    caught_up = CaughtUp(_assign_all(intents_c, kafka.topic(ORDER_INTENTS)))
    _assign_all(quotes_c, kafka.topic(MARKET_QUOTES))

    dead = _dead_letters(producer, result)

    heap: list[tuple[int, int, int, dict[str, Any]]] = []  # (ts, kind 0=intent 1=quote, seq, record)
    seq = itertools.count()
    newest_quote = 0
    released_to = 0
    interval = int(settings.snapshot_interval_s * NS)
    next_snapshot: int | None = None
    stopped = threading.Event()  # set by SIGTERM/SIGINT
    last_input = time.monotonic()

    def release(horizon: int) -> None:
        nonlocal released_to, next_snapshot
        while heap and heap[0][0] <= horizon:
            ts, kind, _, record = heapq.heappop(heap)
            if next_snapshot is None:
                next_snapshot = (ts // interval + 1) * interval
            while ts >= next_snapshot:
                outputs(ACCOUNT_SNAPSHOT, broker.snapshot(next_snapshot, _session(calendar, next_snapshot)))
                next_snapshot += interval
            if kind == 0:
                if ts < released_to:
                    result.late_intents += 1
                router.on_intent(record, ts)
            else:
                for update in broker.on_quote(record):
                    router.on_update(update)
                router.on_clock(ts, record["symbol"])
            released_to = max(released_to, ts)

    with stop_on_signals(stopped.set, "stopping the router"):
        while not stopped.is_set():
            got = 0
            intents = caught_up.observe(intents_c.consume(500, timeout=0.05))
            for intent in _decode_all(serde, intents, ORDER_INTENTS, dead):
                heapq.heappush(heap, (intent["ts"], 0, next(seq), intent))
                got += 1
            for quote in _decode_all(serde, quotes_c.consume(5000, timeout=0.2), MARKET_QUOTES, dead):
                heapq.heappush(heap, (quote["ts"], 1, next(seq), quote))
                newest_quote = max(newest_quote, quote["ts"])
                got += 1
            if got:
                last_input = time.monotonic()
            if caught_up():
                release(newest_quote - settings.quote_hold_ms * MS)
            idle = time.monotonic() - last_input
            if until_idle is not None and idle >= until_idle and caught_up():
                break
            if progress is not None:
                progress(result)
    release(1 << 62)  # the end of the input: everything left, in order
    if next_snapshot is not None and released_to:
        outputs(ACCOUNT_SNAPSHOT, broker.snapshot(released_to, _session(calendar, released_to)))
    producer.flush()
    intents_c.close()
    quotes_c.close()
    return result


# --- tradier ---------------------------------------------------------------------------------------


def run_tradier(
    kafka: KafkaSettings,
    serde: AvroSerde,
    settings: ExecutionSettings,
    tradier: Any,
    audit: AuditWriter,
    *,
    preview: bool,
    until_idle: float | None,
    progress: Callable[[RunResult], None] | None = None,
) -> RunResult:
    from connectors.tradier.broker import TradierPort, stream_update
    from connectors.tradier.parsing import account_snapshot, http_date_ns, order_form, order_update
    from connectors.tradier.rest import TradierClient, TradierError
    from connectors.tradier.stream import AccountStream

    client = TradierClient(tradier)
    port = TradierPort(client, preview)
    producer = AvroProducer(kafka, serde)
    published = Published.read(kafka, serde)
    outputs = Outputs(producer, published)
    fees = FeeSchedule(settings.fees.per_share_usd, settings.fees.per_contract_usd, settings.fees.per_order_usd)
    router = Router(
        port, Accountant(fees), outputs, audit, lambda plan: payload_json(order_form(plan, preview)), preview=preview
    )
    router.restore(published.orders, published.fills, published.ledger)
    result = RunResult(router, outputs, audit)
    calendar = Calendar().load()  # at start, not on the first intent

    def clock() -> int:
        """The broker's clock (Date of its last reply), never behind what we already recorded."""
        return http_date_ns(client.last_date) or 0

    def poll() -> None:
        for obj in client.orders():
            trade = router.by_broker_id.get(str(obj.get("id")), (None, ""))[0]
            if trade is None:
                continue  # not one of ours (or not yet bound): the tag index handles adoption
            for order in trade.orders():
                if order.broker_order_id == str(obj.get("id")):
                    router.on_update(order_update(obj, order.plan, "poll", clock()))

    for obj in client.orders():  # today's orders: adopt what we sent before a restart
        if obj.get("tag"):
            router.known_tags.setdefault(str(obj["tag"]), str(obj["id"]))
    events: queue.Queue[tuple[str, Any, Any]] = queue.Queue()
    stream = AccountStream(client, tradier.stream_url, events)
    stream.start()
    consumer = _consumer(kafka, "tradier-intents")
    caught_up = CaughtUp(_assign_all(consumer, kafka.topic(ORDER_INTENTS)))

    dead = _dead_letters(producer, result)

    stopped = threading.Event()  # set by SIGTERM/SIGINT
    last_input = last_poll = time.monotonic()
    last_snapshot = float("-inf")  # one at start
    poll_now = True
    try:
        with stop_on_signals(stopped.set, "stopping the router"):
            while not stopped.is_set():
                now = time.monotonic()  # the account first: the initial snapshot precedes any order
                if now - last_snapshot >= settings.snapshot_interval_s:
                    try:
                        balances = client.balances()
                        positions = client.positions()
                        snap_ts = clock()
                        outputs(
                            ACCOUNT_SNAPSHOT,
                            account_snapshot(
                                client.account_id, balances, positions, snap_ts, _session(calendar, snap_ts)
                            ),
                        )
                    except TradierError as exc:
                        log.warning("account snapshot failed: %s", exc)
                    last_snapshot = now
                intents = caught_up.observe(consumer.consume(100, timeout=0.1))
                for intent in _decode_all(serde, intents, ORDER_INTENTS, dead):
                    last_input = time.monotonic()
                    router.on_intent(intent, clock() or intent["ts"])
                while True:
                    try:
                        kind, event, why = events.get_nowait()
                    except queue.Empty:
                        break
                    last_input = time.monotonic()
                    if kind == "reconnected":
                        poll_now = True
                    elif kind == "bad":
                        router.unknown(None, None, f"malformed account event: {why}", raw=str(event)[:500])
                    else:
                        stream_update(router, event, client, clock)
                now = time.monotonic()
                if router.open_trades() and (poll_now or now - last_poll >= settings.poll_interval_s):
                    try:
                        poll()
                    except TradierError as exc:
                        log.warning("order poll failed: %s", exc)
                    last_poll, poll_now = now, False
                if clock():
                    router.on_clock(clock())
                producer.poll(0)
                if progress is not None:
                    progress(result)
                if (
                    until_idle is not None
                    and now - last_input >= until_idle
                    and caught_up()
                    and not router.open_trades()
                ):
                    break
    finally:
        stream.close()
        consumer.close()
        producer.flush()
    return result
