"""Every schema round-trips through the real registry and Kafka (hypothesis-generated records)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.catalog import catalog
from schemas.producer import AvroProducer
from schemas.registry import SchemaRegistry
from schemas.serde import AvroSerde
from schemas.settings import KafkaSettings
from tests.avro_strategies import from_schema
from tests.kafka_util import read_exact

TOPICS = catalog().names()


@pytest.mark.parametrize("topic", TOPICS)
def test_schema_round_trips_through_registry_and_kafka(
    topic: str, serde: AvroSerde, test_kafka: KafkaSettings, registry: SchemaRegistry
) -> None:
    spec = serde.catalog[topic]
    producer = AvroProducer(test_kafka, serde, track=True)
    sent: list[dict[str, Any]] = []

    @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
    @given(records=st.lists(from_schema(spec.schema), min_size=1, max_size=15))
    def produce(records: list[dict[str, Any]]) -> None:
        for record in records:
            producer.produce(topic, record)
            sent.append(record)

    produce()
    producer.flush(30)
    assert len(producer.delivered) == len(sent)
    messages = read_exact(test_kafka, producer.delivered)

    # decode in a fresh serde, as another process would: schemas come from the registry by id
    reader = AvroSerde(SchemaRegistry(registry.settings), test_kafka, serde.catalog)
    for record, msg in zip(sent, messages, strict=True):
        assert msg.key() == spec.key_of(record).encode()
        assert reader.decode(msg.value(), topic) == record
    subject = f"{test_kafka.topic(topic)}-value"
    assert registry.get_compatibility(subject) == "BACKWARD"
