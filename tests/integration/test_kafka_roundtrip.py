"""Every schema round-trips through the real registry and Kafka (hypothesis-generated records)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kafkaio.producer import AvroProducer
from kafkaio.registry import SchemaRegistry
from kafkaio.settings import KafkaSettings
from scalp.settings import AppSettings
from schemas.catalog import catalog
from schemas.serde import AvroSerde
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


def test_delivery_reports_are_served_while_the_caller_waits(serde: AvroSerde, test_kafka: KafkaSettings) -> None:
    """Inside ``serving_deliveries`` acknowledgements arrive without the caller polling (the ingest loop
    waits for its next frame between polls); outside it they wait for the caller's next poll."""
    import datetime as dt
    import time

    from connectors.synthetic.records import session_records

    quotes = session_records(dt.date(2026, 11, 20), ["SPY"], 3, "09:30", "16:00")
    record = next(r for topic, r in quotes if topic == "market_quotes")

    def acked_after(producer: AvroProducer, wait_s: float) -> int:
        for _ in range(20):  # fewer than the producer's own poll interval: only a poll serves them
            producer.produce("market_quotes", record)
        deadline = time.monotonic() + wait_s
        while producer.acked < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        return producer.acked

    idle = AvroProducer(test_kafka, serde, report_successes=True)
    assert acked_after(idle, 1.0) == 0
    idle.flush(30)
    assert idle.acked == 20

    served = AvroProducer(test_kafka, serde, report_successes=True)
    with served.serving_deliveries():
        assert acked_after(served, 30.0) == 20


@pytest.mark.parametrize("way", ["send", "raw_produce"])
def test_failed_deliveries_are_surfaced(way: str, serde: AvroSerde, test_kafka: KafkaSettings) -> None:
    """A record the broker never takes (here: its topic does not exist, and the broker does not create
    topics) fails after librdkafka's retries, and flush() raises naming the topic, whichever way it
    was sent (the ingest hot path uses confluent's produce directly)."""
    import uuid

    from kafkaio.errors import FatalError

    kafka = test_kafka.model_copy(
        update={"topic_prefix": f"missing{uuid.uuid4().hex[:8]}_", "delivery_timeout_ms": 1500}
    )
    producer = AvroProducer(kafka, serde)
    topic = kafka.topic("market_quotes")
    value = b"\x00\x00\x00\x00\x01payload"
    if way == "send":
        producer.send(topic, value, b"SPY", 1_700_000_000_000)
    else:
        produce = producer.raw_produce()
        assert produce is not None
        produce(topic, value, b"SPY", timestamp=1_700_000_000_000)
    with pytest.raises(FatalError, match=rf"1 deliveries failed; first: {topic}: "):
        producer.flush(30)
    producer.check()  # reported once
    assert AvroProducer(kafka, serde, track=True).raw_produce() is None  # per-message reports need send()


def test_a_registry_behind_basic_auth_is_reached_with_its_login_and_refused_without(
    services: AppSettings, prefix: str
) -> None:
    """A registry that wants HTTP basic auth (a separate process in front of the real one): the pipeline's
    commands register and read schemas with SCHEMA_REGISTRY_BASIC_AUTH_*; a wrong password or none is a
    configuration error (exit 2, naming the settings), and the password appears nowhere in the output."""
    import uuid
    from urllib.parse import urlsplit

    from connectors.process import ready_server
    from tests.cli_util import scalp

    upstream = urlsplit(services.registry.url)
    password = f"gw-{uuid.uuid4().hex}"
    args = ["--upstream", f"{upstream.scheme}://{upstream.netloc}", "--user", "pipeline", "--password", password]
    with ready_server("tests.servers.registry_gateway", args) as (_, (base,)):
        env = {
            "SCALP_TOPIC_PREFIX": prefix,
            "SCHEMA_REGISTRY_URL": f"{base}/apis/ccompat/v7",
            "SCHEMA_REGISTRY_BASIC_AUTH_USER": "pipeline",
        }
        good = scalp("topics", "create", env={**env, "SCHEMA_REGISTRY_BASIC_AUTH_PASSWORD": password})
        assert good.returncode == 0, good.stderr[-2000:]
        assert f"{len(catalog().names())} schemas registered" in good.stdout
        wrong = f"wrong-{uuid.uuid4().hex}"
        bad = scalp("topics", "create", env={**env, "SCHEMA_REGISTRY_BASIC_AUTH_PASSWORD": wrong})
        assert bad.returncode == 2, bad.stderr[-2000:]
        assert "refused the request as pipeline (HTTP 401)" in bad.stderr
        assert wrong not in bad.stdout + bad.stderr
        anonymous = scalp("topics", "create", env=env | {"SCHEMA_REGISTRY_BASIC_AUTH_USER": ""})
        assert anonymous.returncode == 2
        assert "without a login (HTTP 401)" in anonymous.stderr
