"""What the scale-out benchmark watches while a session runs: each process's /metrics (CPU, lag, inputs
taken) once a second, and the time from a tick to the feature it completes on partition 0."""

from __future__ import annotations

import abc
import contextlib
import threading
import time
import uuid
from typing import TypeVar

from confluent_kafka import TopicPartition

from kafkaio import clients
from kafkaio.settings import KafkaSettings
from schemas.serde import AvroSerde
from schemas.topics import FEATURES, MARKET_QUOTES, MARKET_TRADES

T = TypeVar("T", bound="Background")


class Background(abc.ABC):
    """A daemon thread running ``_run`` while the ``with`` block lasts; ``_stop`` is set at its end."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self: T) -> T:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    @abc.abstractmethod
    def _run(self) -> None: ...


class Sampler(Background):
    """Scrapes every process's /metrics each second: CPU seconds, lag, ingest's published events."""

    def __init__(self, ports: dict[str, int]) -> None:
        super().__init__()
        self.ports = ports  # instance name ("streams-0") -> port
        self.cpu: dict[str, float] = {}
        self.lag: dict[str, float] = {}
        self.max_lag: dict[str, float] = {}
        self.events: dict[str, float] = {}  # streams instance -> market inputs taken
        self.not_applied: dict[str, dict[str, float]] = {}  # streams instance -> reason -> inputs not applied
        self.first_event: float | None = None
        self.series: list[tuple[float, float]] = []  # (monotonic time, lag summed over the streams workers)

    def poll(self) -> None:
        from scalp.top import scrape, total

        for name, port in self.ports.items():
            with contextlib.suppress(OSError, ValueError):
                samples = scrape(f"http://127.0.0.1:{port}/metrics", timeout_s=5)
                self.cpu[name] = total(samples, "process_cpu_seconds_total") or self.cpu.get(name, 0.0)
                lag = total(samples, "scalp_consumer_lag_messages") or 0.0  # no series: no partition read yet
                self.lag[name] = lag
                self.max_lag[name] = max(self.max_lag.get(name, 0.0), lag)
                self.events[name] = total(samples, "scalp_streams_events_total") or 0.0
                if name.startswith("streams-"):
                    self.not_applied[name] = {
                        labels["reason"]: value
                        for labels, value in samples.get("scalp_streams_inputs_not_applied_total", [])
                    }
                if name == "ingest" and self.first_event is None and (total(samples, "scalp_ingest_events_total") or 0):
                    self.first_event = time.monotonic()
        self.series.append((time.monotonic(), sum(v for k, v in self.lag.items() if k.startswith("streams-"))))

    def longest_behind(self, threshold: float = 1000.0) -> float:
        """The longest stretch (s) the streams workers were more than ``threshold`` records behind: how long
        the worst burst took to work off."""
        longest, since = 0.0, None
        for when, lag in self.series:
            if lag > threshold:
                since = when if since is None else since
                longest = max(longest, when - since)
            else:
                since = None
        return longest

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.poll()


class LatencyWatch(Background):
    """Consumes partition 0 of the market topics and of features; pairs each feature with the first tick of the
    same symbol and event-time millisecond, and keeps (seen feature - seen tick) in ms."""

    def __init__(self, kafka: KafkaSettings, serde: AvroSerde) -> None:
        super().__init__()
        self.kafka = kafka
        self.serde = serde
        self.latency_ms: list[float] = []
        self._seen: dict[tuple[bytes, int], float] = {}  # (symbol, event ms) -> when the tick was seen

    def _prune(self, now: float, keep_s: float = 600.0) -> None:
        """Ticks without a feature of their millisecond are most of them: forget those seen long ago (an
        hour-long session would otherwise keep every one)."""
        self._seen = {k: v for k, v in self._seen.items() if now - v < keep_s}

    def _run(self) -> None:
        consumer = clients.consumer(self.kafka, f"bench-latency-{uuid.uuid4().hex[:6]}", quiet=True)
        market = {self.kafka.topic(MARKET_TRADES), self.kafka.topic(MARKET_QUOTES)}
        features = self.kafka.topic(FEATURES)
        consumer.assign([TopicPartition(t, 0, 0) for t in [*market, features]])
        pruned = time.monotonic()
        try:
            while not self._stop.is_set():
                if time.monotonic() - pruned >= 60:
                    pruned = time.monotonic()
                    self._prune(pruned)
                for msg in consumer.consume(2000, timeout=0.2):
                    key, value = msg.key() or b"", msg.value()
                    if msg.error() is not None or value is None:
                        continue
                    now = time.monotonic()
                    if msg.topic() in market:  # the Kafka timestamp is the tick's event time (ms): not decoded
                        self._seen.setdefault((key, msg.timestamp()[1]), now)
                    else:
                        record = self.serde.decode(value, FEATURES)
                        tick = self._seen.pop((key, record["ts"] // 1_000_000), None)
                        if tick is not None:
                            self.latency_ms.append((now - tick) * 1e3)
        finally:
            consumer.close()
