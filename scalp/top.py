"""`scalp top`'s model: what the running pipeline does now, from the processes' /metrics endpoints and from
Kafka (no database). Rendering is in :mod:`scalp.cli_top`.

- Per process (ingest, streams, sink, execute): up or not, its main rate (events, records or rows per second,
  from two scrapes), its consumer lag, CPU (cores) and resident memory.
- Per symbol: the venue time of its last trade and quote (the Kafka timestamp of the newest record of
  market_trades / market_quotes, which is the event time) and how long ago that is by the wall clock.
- The router's trading state and open trades (execute's metrics), the day's risk figures (the newest
  risk_day record) and the open positions (the newest account_snapshot of each account).
"""

from __future__ import annotations

import logging
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from kafkaio import clients
from kafkaio.settings import KafkaSettings
from schemas.serde import AvroSerde
from schemas.topics import ACCOUNT_SNAPSHOT, MARKET_QUOTES, MARKET_TRADES, RISK_DAY

log = logging.getLogger(__name__)

# process -> (the counter its rate is of, what it counts)
RATE_OF = {
    "ingest": ("scalp_ingest_events_total", "events/s"),
    "streams": ("scalp_streams_events_total", "events/s"),
    "sink": ("scalp_sink_rows_written_total", "rows/s"),
    "execute": ("scalp_execute_intents_total", "intents/s"),
}
TAIL = 200  # records read back per market partition at start, so quiet symbols show their last tick
Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(url: str, timeout_s: float = 2.0) -> Samples:
    """name -> [(labels, value)] of every sample at ``url`` (Prometheus text)."""
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 (http URL built from settings)
        text = resp.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def total(samples: Samples, name: str, **labels: str) -> float | None:
    found = [v for lab, v in samples.get(name, []) if all(lab.get(k) == want for k, want in labels.items())]
    return sum(found) if found else None


@dataclass
class ProcessView:
    name: str
    url: str
    up: bool = False
    error: str = ""
    rate: float | None = None
    unit: str = ""
    lag: float | None = None
    cpu: float | None = None  # cores
    rss: float | None = None  # bytes
    samples: Samples = field(default_factory=dict)


class Endpoints:
    """The processes' /metrics; rates from the difference between two scrapes."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls
        self._last: dict[str, tuple[float, float | None, float | None]] = {}  # name -> (when, counter, cpu)

    def poll(self) -> list[ProcessView]:
        views = []
        for name, url in self.urls.items():
            view = ProcessView(name, url, unit=RATE_OF.get(name, ("", ""))[1])
            try:
                view.samples = scrape(url)
            except (OSError, urllib.error.URLError, ValueError) as exc:
                view.error = re.sub(r"^\[Errno \d+\] ", "", str(getattr(exc, "reason", exc)))
                self._last.pop(name, None)
                views.append(view)
                continue
            view.up = True
            now = time.monotonic()
            counter = total(view.samples, RATE_OF[name][0]) if name in RATE_OF else None
            cpu = total(view.samples, "process_cpu_seconds_total")
            before = self._last.get(name)
            if before is not None and now > before[0]:
                span = now - before[0]
                if counter is not None and before[1] is not None:
                    view.rate = max(counter - before[1], 0.0) / span
                if cpu is not None and before[2] is not None:
                    view.cpu = max(cpu - before[2], 0.0) / span
            self._last[name] = (now, counter, cpu)
            view.lag = total(view.samples, "scalp_consumer_lag_messages")
            view.rss = total(view.samples, "process_resident_memory_bytes")
            views.append(view)
        return views


class KafkaTail:
    """A thread reading the ends of the market topics (symbol and Kafka timestamp only, nothing decoded) and
    of risk_day and account_snapshot (decoded: the newest of each)."""

    def __init__(self, kafka: KafkaSettings, serde: AvroSerde) -> None:
        self.kafka = kafka
        self.serde = serde
        self.last_tick: dict[str, dict[str, int]] = {}  # symbol -> {"trade"|"quote": venue ms}
        self.risk_day: dict[str, Any] | None = None
        self.accounts: dict[str, dict[str, Any]] = {}  # account id -> newest snapshot
        self.error = ""
        self._kinds = {kafka.topic(MARKET_TRADES): "trade", kafka.topic(MARKET_QUOTES): "quote"}
        self._decoded = {kafka.topic(RISK_DAY): RISK_DAY, kafka.topic(ACCOUNT_SNAPSHOT): ACCOUNT_SNAPSHOT}
        self.ready = threading.Event()  # read to the ends once (or failed): a view now shows what Kafka holds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="top-kafka", daemon=True)

    def start(self) -> KafkaTail:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _assign(self, consumer: Consumer) -> None:
        parts = []
        for topic in [*self._kinds, *self._decoded]:
            meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or meta.error is not None:
                continue
            back = TAIL if topic in self._kinds else 1
            for partition in meta.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                parts.append(TopicPartition(topic, partition, max(low, high - back) if high > low else OFFSET_END))
        consumer.assign(parts)

    def _run(self) -> None:
        try:
            consumer = clients.consumer(self.kafka, "scalp-top", quiet=True)
        except Exception as exc:  # shown in the view, never raised into the terminal
            self.error = str(exc)
            self.ready.set()
            return
        try:
            self._assign(consumer)
            while not self._stop.is_set():
                batch = consumer.consume(500, timeout=0.5)
                if not batch:
                    self.ready.set()
                for msg in batch:
                    if msg.error() is None:
                        self._take(msg)
        except Exception as exc:
            self.error = str(exc)
            log.debug("top: Kafka tail stopped", exc_info=True)
        finally:
            self.ready.set()
            consumer.close()

    def _take(self, msg: Any) -> None:
        topic = msg.topic()
        kind = self._kinds.get(topic)
        if kind is not None:
            key = msg.key()
            if key:
                ticks = self.last_tick.setdefault(key.decode(errors="replace"), {})
                ts = msg.timestamp()[1]
                if ts > ticks.get(kind, 0):
                    ticks[kind] = ts
            return
        logical = self._decoded.get(topic)
        if logical is None or msg.value() is None:
            return
        record = self.serde.decode(msg.value(), logical)
        if logical == RISK_DAY:
            if self.risk_day is None or (record["ts"], record.get("seq", 0)) >= (
                self.risk_day["ts"],
                self.risk_day.get("seq", 0),
            ):
                self.risk_day = record
        else:
            held = self.accounts.get(record["account_id"])
            if held is None or record["ts"] >= held["ts"]:
                self.accounts[record["account_id"]] = record


@dataclass
class TopView:
    at_ns: int  # wall clock of the view
    processes: list[ProcessView]
    last_tick: dict[str, dict[str, int]]
    risk_day: dict[str, Any] | None
    accounts: dict[str, dict[str, Any]]
    kafka_error: str = ""

    def trading_state(self) -> str | None:
        execute = next((p for p in self.processes if p.name == "execute" and p.up), None)
        if execute is None:
            return None
        states = [lab["state"] for lab, v in execute.samples.get("scalp_execute_trading_state", []) if v == 1]
        return states[0] if states else None

    def open_trades(self) -> float | None:
        execute = next((p for p in self.processes if p.name == "execute" and p.up), None)
        return None if execute is None else total(execute.samples, "scalp_execute_open_trades")


class Top:
    def __init__(self, urls: dict[str, str], tail: KafkaTail | None) -> None:
        self.endpoints = Endpoints(urls)
        self.tail = tail

    def view(self) -> TopView:
        tail = self.tail
        return TopView(
            time.time_ns(),
            self.endpoints.poll(),
            {s: dict(k) for s, k in list(tail.last_tick.items())} if tail else {},
            tail.risk_day if tail else None,
            dict(tail.accounts) if tail else {},
            tail.error if tail else "",
        )
