"""`scalp execute --broker paper`: the router on Kafka with the paper broker (Tradier: ``tradier.py``).

Inputs are read from the start of the retained topics (``order_intents`` and ``market_quotes``), not from
committed group offsets: what earlier runs published (``orders``, ``fills``, ``trade_ledger``,
``account_snapshot``) is read back first, so a rerun publishes nothing twice.

Paper runs in event time: intents and quotes are merged by ``ts`` (quotes held ``quote_hold_ms`` behind
the newest one, and until the intents topic is read to its end), so the same topics give the same
orders and fills. The control topic (halt, reduce, flatten, resume) applies when a command arrives, so a
run that receives one is only as deterministic as the command's timing.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from execution.paper import PaperBroker, PaperPort
from execution.router import Router
from execution.settings import ExecutionSettings
from execution.tracker import Accountant, FeeSchedule
from kafkaio.lifecycle import stop_on_signals
from kafkaio.producer import AvroProducer
from kafkaio.settings import KafkaSettings
from schemas.serde import AvroSerde
from schemas.topics import ACCOUNT_SNAPSHOT, MARKET_QUOTES, ORDER_INTENTS
from sinks.audit import AuditWriter
from streams.core.sessions import Calendar

from .common import (
    MS,
    NS,
    CaughtUp,
    Outputs,
    Published,
    RunResult,
    assign_all,
    consumer,
    dead_letters,
    decode_all,
    make_guard,
    session_of,
)
from .control import PAPER_ACCOUNT, ControlFeed, own_changes, watch_deliveries


def run_paper(
    kafka: KafkaSettings,
    serde: AvroSerde,
    settings: ExecutionSettings,
    audit: AuditWriter,
    *,
    until_idle: float | None,
    progress: Callable[[RunResult], None] | None = None,
    lease_check: Callable[[], None] = lambda: None,
) -> RunResult:
    broker = PaperBroker(settings.paper)
    producer = AvroProducer(kafka, serde)
    published = Published.read(kafka, serde)
    outputs = Outputs(producer, published)
    fees = FeeSchedule(settings.fees.per_share_usd, settings.fees.per_contract_usd, settings.fees.per_order_usd)
    calendar = Calendar().load()  # at start, not on the first intent
    guard = make_guard(settings, calendar, None)  # the paper broker is in this process: nothing to flush for
    router = Router(
        PaperPort(broker), Accountant(fees), outputs, audit, lambda plan: "[]", guard=guard,
        on_state=own_changes(producer, PAPER_ACCOUNT),
    )  # fmt: skip
    result = RunResult(router, outputs, audit)
    control = ControlFeed(kafka, serde, producer, PAPER_ACCOUNT)
    control.catch_up(router, lambda: released_to)
    intents_c, quotes_c = consumer(kafka, "paper-intents"), consumer(kafka, "paper-quotes")
    caught_up = CaughtUp(assign_all(intents_c, kafka.topic(ORDER_INTENTS)))
    assign_all(quotes_c, kafka.topic(MARKET_QUOTES))

    dead = dead_letters(producer, result)

    heap: list[tuple[int, int, int, dict[str, Any]]] = []  # (ts, kind 0=intent 1=quote, seq, record)
    seq = itertools.count()
    newest_quote = 0
    released_to = 0
    interval = int(settings.snapshot_interval_s * NS)
    next_snapshot: int | None = None
    stopped = threading.Event()  # set by SIGTERM/SIGINT
    last_input = last_lease = time.monotonic()

    def release(horizon: int) -> None:
        nonlocal released_to, next_snapshot
        while heap and heap[0][0] <= horizon:
            ts, kind, _, record = heapq.heappop(heap)
            if next_snapshot is None:
                next_snapshot = (ts // interval + 1) * interval
            while ts >= next_snapshot:
                outputs(ACCOUNT_SNAPSHOT, broker.snapshot(next_snapshot, session_of(calendar, next_snapshot)))
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
            for intent in decode_all(serde, intents, ORDER_INTENTS, dead):
                heapq.heappush(heap, (intent["ts"], 0, next(seq), intent))
                got += 1
            for quote in decode_all(serde, quotes_c.consume(5000, timeout=0.2), MARKET_QUOTES, dead):
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
            control.poll(router, lambda: released_to, enforce=True)
            watch_deliveries(producer, router, released_to)
            if time.monotonic() - last_lease >= settings.lease_check_s:
                lease_check()
                last_lease = time.monotonic()
            if progress is not None:
                progress(result)
    release(1 << 62)  # the end of the input: everything left, in order
    if next_snapshot is not None and released_to:
        outputs(ACCOUNT_SNAPSHOT, broker.snapshot(released_to, session_of(calendar, released_to)))
    producer.flush()
    result.dead_letters += control.dead_letters
    intents_c.close()
    quotes_c.close()
    control.close()
    return result
