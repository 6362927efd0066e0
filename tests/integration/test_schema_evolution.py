"""BACKWARD compatibility is enforced by the registry: an optional field is accepted, a breaking change not."""

from __future__ import annotations

import copy
import json
import uuid

import pytest

from kafkaio.errors import SerializationError
from kafkaio.producer import AvroProducer
from kafkaio.registry import SchemaRegistry
from kafkaio.settings import KafkaSettings
from schemas.examples import example_record
from schemas.serde import AvroSerde
from tests.kafka_util import read_exact


def fresh_subject() -> str:
    return f"evolution_{uuid.uuid4().hex[:8]}-value"


def test_adding_an_optional_field_is_accepted(registry: SchemaRegistry, serde: AvroSerde) -> None:
    schema = copy.deepcopy(serde.catalog["market_trades"].schema)
    subject = fresh_subject()
    v1 = registry.register(subject, json.dumps(schema))
    registry.set_compatibility(subject, "BACKWARD")
    schema["fields"].append({"name": "venue_note", "type": ["null", "string"], "default": None, "doc": "new"})
    v2 = registry.register(subject, json.dumps(schema))
    assert v2 != v1
    assert registry.latest_id(subject) == v2


@pytest.mark.parametrize("breaking", ["required_field", "type_change"])
def test_incompatible_change_is_rejected(registry: SchemaRegistry, serde: AvroSerde, breaking: str) -> None:
    schema = copy.deepcopy(serde.catalog["market_quotes"].schema)
    subject = fresh_subject()
    v1 = registry.register(subject, json.dumps(schema))
    registry.set_compatibility(subject, "BACKWARD")
    if breaking == "required_field":
        schema["fields"].append({"name": "must_have", "type": "string", "doc": "no default"})
    else:
        for field in schema["fields"]:
            if field["name"] == "bid":
                field["type"] = "string"
    assert not registry.is_compatible(subject, json.dumps(schema))
    with pytest.raises(SerializationError, match="incompatible"):
        registry.register(subject, json.dumps(schema))
    assert registry.latest_id(subject) == v1


def test_old_records_decode_with_the_evolved_reader(
    registry: SchemaRegistry, serde: AvroSerde, test_kafka: KafkaSettings
) -> None:
    """A record written with v1 is read by code whose catalog has v2 (the new field takes its default)."""
    producer = AvroProducer(test_kafka, serde, track=True)
    record = example_record(serde.catalog, "market_trades")
    producer.produce("market_trades", record)
    producer.flush(30)
    (msg,) = read_exact(test_kafka, producer.delivered)

    from dataclasses import replace

    from schemas.catalog import Catalog

    spec = serde.catalog["market_trades"]
    evolved = copy.deepcopy(spec.schema)
    evolved["fields"].append({"name": "venue_note", "type": ["null", "string"], "default": None, "doc": "new"})
    new_catalog = Catalog({**serde.catalog.topics, "market_trades": replace(spec, schema=evolved)}, serde.catalog.dlq)
    reader = AvroSerde(SchemaRegistry(registry.settings), test_kafka, new_catalog)
    decoded = reader.decode(msg.value(), "market_trades")
    assert decoded == {**record, "venue_note": None}


def test_workers_starting_together_set_a_subject_s_compatibility_without_a_conflict(
    registry: SchemaRegistry, serde: AvroSerde
) -> None:
    """Two streams workers started at once failed with Apicurio's 409 ("a rule named 'COMPATIBILITY' already
    exists"): each saw no rule and created it. Many clients at once on fresh subjects all succeed."""
    import threading

    from kafkaio.registry import SchemaRegistry as Client

    schema = json.dumps(serde.catalog["market_trades"].schema)
    subjects = [fresh_subject() for _ in range(6)]
    for subject in subjects:
        registry.register(subject, schema)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker() -> None:
        client = Client(registry.settings)  # a client of its own, as each worker process has
        start.wait()
        for subject in subjects:
            try:
                client.set_compatibility(subject, "BACKWARD")
            except Exception as exc:  # collected and asserted below
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert {registry.get_compatibility(s) for s in subjects} == {"BACKWARD"}
