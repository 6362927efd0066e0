"""`scalp backfill`: REST history into the same topics, de-duplicated against what Kafka already holds.

Re-running a window publishes nothing twice: before fetching, the keys already in the topic for the
window are read back from Kafka (by event time), and REST rows with those keys are skipped. Pagination
follows ``next_url``; 429 and 5xx are retried by the client (honouring Retry-After), then by us.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from kafkaio.admin import TopicAdmin
from kafkaio.producer import AvroProducer
from kafkaio.reader import read_topic
from kafkaio.retry import Backoff, retry
from kafkaio.settings import KafkaSettings
from schemas.catalog import Catalog
from schemas.serde import AvroSerde
from schemas.topics import BARS_1M, MARKET_QUOTES, MARKET_TRADES

from .dedupe import event_key
from .rest import PolygonRest
from .settings import PolygonSettings

log = logging.getLogger(__name__)
TOPICS = {"trades": MARKET_TRADES, "quotes": MARKET_QUOTES, "bars": BARS_1M}


@dataclass
class BackfillResult:
    symbol: str
    kind: str
    fetched: int = 0
    published: int = 0
    already_present: int = 0


Progress = Callable[[str, str, int, int], None]  # (symbol, kind, ts reached, rows so far)


class Backfill:
    def __init__(
        self,
        kafka: KafkaSettings,
        serde: AvroSerde,
        producer: AvroProducer,
        rest: PolygonRest,
        deadline_s: float = 300.0,
    ) -> None:
        self.kafka = kafka
        self.serde = serde
        self.producer = producer
        self.rest = rest
        self.deadline_s = deadline_s

    @classmethod
    def open(
        cls, kafka: KafkaSettings, serde: AvroSerde, catalog: Catalog, polygon: PolygonSettings, kinds: list[str],
        from_ns: int,
    ) -> Backfill:  # fmt: skip
        """A backfill of ``kinds`` from ``from_ns`` on: the topics exist and keep that window (else ConfigError
        naming SCALP_MIN_RETENTION_MS), the producer and the REST client are ready."""
        admin = TopicAdmin(kafka, catalog)
        admin.create_all()
        admin.check_kept([TOPICS[k] for k in kinds], from_ns, time.time_ns(), "the backfill window")
        return cls(kafka, serde, AvroProducer(kafka, serde), PolygonRest(polygon, time.time_ns))

    def existing_keys(self, topic: str, symbol: str, from_ns: int, to_ns: int) -> set[Hashable]:
        keys: set[Hashable] = set()
        for record in read_topic(self.kafka, self.serde, topic, from_ms=from_ns // 1_000_000):
            if record["symbol"] == symbol and from_ns <= record["ts"] < to_ns:
                keys.add(event_key(topic, record))
        return keys

    def run_one(
        self,
        symbol: str,
        kind: str,
        from_ns: int,
        to_ns: int,
        progress: Progress | None = None,
        ts_ingest: Callable[[dict[str, Any]], int] | None = None,
    ) -> BackfillResult:
        topic = TOPICS[kind]
        result = BackfillResult(symbol, kind)
        present = self.existing_keys(topic, symbol, from_ns, to_ns)

        def fetch_and_publish() -> None:
            if kind == "trades":
                rows = self.rest.trades(symbol, from_ns, to_ns - 1)
            elif kind == "quotes":
                rows = self.rest.quotes(symbol, from_ns, to_ns - 1)
            else:
                rows = self.rest.minute_bars(symbol, from_ns // 1_000_000, (to_ns - 1) // 1_000_000)
            for record in rows:
                if not from_ns <= record["ts"] < to_ns:
                    continue
                result.fetched += 1
                key = event_key(topic, record)
                if key in present:
                    result.already_present += 1
                else:
                    if ts_ingest is not None:
                        record["ts_ingest"] = ts_ingest(record)
                    self.producer.produce(topic, record)
                    present.add(key)
                    result.published += 1
                if progress is not None and result.fetched % 5_000 == 0:
                    progress(symbol, kind, record["ts"], result.fetched)
            self.producer.flush()

        # a failed page is re-fetched from the start of the window: what was published is in `present`
        retry(
            fetch_and_publish,
            what=f"backfill {kind} {symbol}",
            deadline_s=self.deadline_s,
            backoff=Backoff(1.0, 30.0),
            on_retry=lambda n, d, e: log.warning(
                "backfill %s %s attempt %d failed (%s); retry in %.1fs", kind, symbol, n, e, d
            ),
        )
        if progress is not None:
            progress(symbol, kind, to_ns, result.fetched)
        return result
