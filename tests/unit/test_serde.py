from __future__ import annotations

import io
import struct
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kafkaio.errors import SerializationError
from kafkaio.settings import KafkaSettings
from schemas.catalog import Catalog, catalog
from schemas.examples import example_record
from schemas.serde import AvroSerde
from tests.avro_strategies import from_schema
from tests.fakes import InMemoryRegistry

TOPICS = catalog().names()


def make_serde(cat: Catalog, prefix: str = "") -> tuple[AvroSerde, InMemoryRegistry]:
    registry = InMemoryRegistry()
    return AvroSerde(registry, KafkaSettings(topic_prefix=prefix), cat), registry


@pytest.mark.parametrize("topic", TOPICS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_schema_round_trips_in_wire_format(topic: str, data: st.DataObject) -> None:
    cat = catalog()
    serde, registry = make_serde(cat)
    record = data.draw(from_schema(cat[topic].schema))
    encoded = serde.encode(topic, record)
    magic, schema_id = struct.unpack(">bI", encoded[:5])
    assert magic == 0
    assert registry.by_id[schema_id]
    assert serde.decode(encoded, topic) == record
    # a second serde (another process) decodes through the registry by id alone
    other = AvroSerde(registry, KafkaSettings(), cat)
    assert other.decode(encoded) == record
    # cavro (the hot path) and fastavro (resolution between versions, other tools) agree byte for byte
    parsed = fastavro.parse_schema(cat[topic].schema)
    reference = io.BytesIO()
    fastavro.schemaless_writer(reference, parsed, record)
    assert encoded[5:] == reference.getvalue()
    assert fastavro.schemaless_reader(io.BytesIO(encoded[5:]), parsed, None) == record


def test_subject_is_topic_value_with_prefix(cat: Catalog) -> None:
    serde, registry = make_serde(cat, prefix="dev_")
    serde.encode("fills", example_record(cat, "fills"))
    assert list(registry.subjects) == ["dev_fills-value"]
    assert registry.compatibility["dev_fills-value"] == "BACKWARD"


@pytest.mark.parametrize(
    ("topic", "field", "value"),
    [
        ("market_trades", "price", "not a number"),
        ("market_trades", "size", 2**70),
        ("market_quotes", "tape", "z"),
        ("market_trades", "size", 3.0),
        ("market_quotes", "bid", "1.5"),
        ("market_trades", "exchange", 2**40),
        ("signals", "filters_passed", [1, 2]),
    ],
)
def test_bad_field_names_topic_and_field(cat: Catalog, topic: str, field: str, value: Any) -> None:
    serde, _ = make_serde(cat)
    record = example_record(cat, topic)
    record[field] = value
    with pytest.raises(SerializationError) as info:
        serde.encode(topic, record)
    assert info.value.topic == topic
    assert info.value.field == field
    assert f"{topic}.{field}" in str(info.value)


def test_missing_field_is_named(cat: Catalog) -> None:
    serde, _ = make_serde(cat)
    record = example_record(cat, "orders")
    del record["status"]
    with pytest.raises(SerializationError, match=r"orders\.status"):
        serde.encode("orders", record)


def test_nested_field_is_named(cat: Catalog) -> None:
    serde, _ = make_serde(cat)
    record = example_record(cat, "orders")
    record["legs"][0]["qty"] = "many"
    with pytest.raises(SerializationError, match=r"orders\.OrderLeg\.qty"):
        serde.encode("orders", record)


@pytest.mark.parametrize("data", [b"", b"\x00\x00", b"\x01\x00\x00\x00\x01abc"])
def test_garbage_is_a_serialization_error(cat: Catalog, data: bytes) -> None:
    serde, _ = make_serde(cat)
    with pytest.raises(SerializationError):
        serde.decode(data, "market_trades")


def test_unknown_schema_id_is_a_serialization_error(cat: Catalog) -> None:
    serde, _ = make_serde(cat)
    with pytest.raises(SerializationError, match="unknown schema id 99"):
        serde.decode(struct.pack(">bI", 0, 99) + b"\x00", "market_trades")


def test_keys_follow_the_catalog(cat: Catalog) -> None:
    serde, _ = make_serde(cat)
    assert serde.key("market_trades", example_record(cat, "market_trades")) == b"SPY"
    assert serde.key("risk_day", example_record(cat, "risk_day")) == b"2026-11-23"
    assert serde.key("risk_decisions", example_record(cat, "risk_decisions")) == b"signal_id-1"


@pytest.mark.parametrize("topic", TOPICS)
def test_wire_schema_gives_the_same_bytes_as_the_annotated_schema(topic: str) -> None:
    cat = catalog()
    serde, _ = make_serde(cat)
    record = example_record(cat, topic)
    annotated = io.BytesIO()
    fastavro.schemaless_writer(annotated, fastavro.parse_schema(cat[topic].schema), record)
    assert serde.encode(topic, record)[5:] == annotated.getvalue()


@pytest.mark.parametrize("topic", [t for t in TOPICS if len(catalog()[t].schema["fields"]) >= 3])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_field_encoder_gives_the_records_bytes(topic: str, data: st.DataObject) -> None:
    """FieldEncoder (the ingest hot path) from a dict keyed otherwise, with a default taken for a missing
    key and the last field as a constant, gives the bytes encode() gives for the record."""
    cat = catalog()
    serde, _ = make_serde(cat)
    record = data.draw(from_schema(cat[topic].schema))
    fields = [f["name"] for f in cat[topic].schema["fields"]]
    names = {f: f"k_{f}" for f in fields}
    left_out = fields[1]  # given by defaults, not by the dict
    encoder = serde.field_encoder(topic, names, {left_out: record[left_out]}, {fields[-1]: record[fields[-1]]})
    event = {names[f]: v for f, v in record.items() if f not in (left_out, fields[-1])}
    event["unrelated"] = object()  # keys the schema does not name are ignored
    assert encoder(event) == serde.encode(topic, record)
    assert encoder.heads[record[fields[0]]] == serde.encode(topic, record)[: len(encoder.heads[record[fields[0]]])]


def test_field_encoder_refuses_unknown_fields_and_constants_that_are_not_last() -> None:
    serde, _ = make_serde(catalog())
    with pytest.raises(ValueError, match=r"no such fields \['nope'\]"):
        serde.field_encoder("market_quotes", {"nope": "x"}, {}, {"source": "ws"})
    with pytest.raises(ValueError, match="constants must be the last fields"):
        serde.field_encoder("market_quotes", {}, {}, {"tape": None})
