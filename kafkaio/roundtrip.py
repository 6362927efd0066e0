"""Round-trip one example record of every topic through the registry and Kafka (the pre-demo check)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.catalog import Catalog
from schemas.examples import example_record
from schemas.serde import AvroSerde

from .errors import FatalError
from .producer import AvroProducer
from .reader import RangeReader
from .settings import KafkaSettings


@dataclass(frozen=True)
class RoundTrip:
    topic: str
    partition: int
    offset: int
    schema_id: int
    key: str
    size: int
    equal: bool


def round_trip_all(
    kafka: KafkaSettings, serde: AvroSerde, catalog: Catalog, timeout_s: float = 30.0
) -> list[RoundTrip]:
    records = {spec.name: example_record(catalog, spec.name) for spec in catalog}
    producer = AvroProducer(kafka, serde, track=True)
    for topic, record in records.items():
        producer.produce(topic, record)
    producer.flush(timeout_s)
    by_topic = {t: (p, o) for t, p, o in producer.delivered}
    results: list[RoundTrip] = []
    with RangeReader(kafka, "scalp-roundtrip", timeout_s) as reader:
        for spec in catalog:
            physical = kafka.topic(spec.name)
            partition, offset = by_topic[physical]
            msg = reader.first(physical, partition, offset, timeout_s)
            if msg is None or msg.offset != offset:
                raise FatalError(f"{physical}[{partition}]@{offset}: could not read back the record")
            value = msg.value
            if value is None:
                raise FatalError(f"{physical}[{partition}]@{offset}: empty value")
            decoded: dict[str, Any] = serde.decode(value, spec.name)
            results.append(
                RoundTrip(
                    physical,
                    partition,
                    offset,
                    serde.schema_id(value, spec.name),
                    (msg.key or b"").decode(),
                    len(value),
                    decoded == records[spec.name],
                )
            )
    return results
