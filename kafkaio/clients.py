"""Every Kafka client of the project is built here, from one :class:`KafkaSettings`.

- :func:`consumer`: a confluent-kafka consumer. Never auto-commits: sinks commit offsets in their own
  database transaction, readers commit nothing, and Faust commits its own group through aiokafka.
- :func:`producer`: a plain idempotent confluent-kafka producer (dead letters); catalog records go through
  :class:`kafkaio.producer.AvroProducer`, which builds its client here too.
- :func:`admin`: the admin client.
- :func:`faust_broker`: the broker URL and client settings Faust/aiokafka is given.
- :func:`registry_client`: the schema registry client configuration.

Later capabilities (TLS/SASL, property passthrough, metrics hooks) are added in this one place.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from .settings import KafkaSettings, RegistrySettings


def consumer_config(
    kafka: KafkaSettings,
    group: str,
    *,
    eof: bool = False,
    earliest: bool = False,
    quiet: bool = False,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """librdkafka configuration of a consumer in ``group``.

    ``eof``: report the end of each partition (range reads). ``earliest``: a partition without a committed
    offset starts at its beginning. ``quiet``: only errors from librdkafka's own log. ``extra``: more
    properties (tuning of one consumer; never overrides auto-commit).
    """
    config: dict[str, Any] = {**kafka.client_config(), "group.id": group, **(extra or {})}
    config["enable.auto.commit"] = False
    if eof:
        config["enable.partition.eof"] = True
    if earliest:
        config["auto.offset.reset"] = "earliest"
    if quiet:
        config["log_level"] = 3
    return config


def consumer(kafka: KafkaSettings, group: str, **options: Any) -> Consumer:
    """A consumer in ``group``; ``options`` as :func:`consumer_config` takes them."""
    return Consumer(consumer_config(kafka, group, **options))


def producer_config(kafka: KafkaSettings, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """An idempotent producer's configuration: acks from every in-sync replica, retries inside librdkafka."""
    return {
        **kafka.client_config(),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": kafka.linger_ms,
        "delivery.timeout.ms": kafka.delivery_timeout_ms,
        **(extra or {}),
    }


def producer(kafka: KafkaSettings, extra: dict[str, Any] | None = None) -> Producer:
    """A plain idempotent producer (see :func:`producer_config`)."""
    return Producer(producer_config(kafka, extra))


def admin(kafka: KafkaSettings) -> AdminClient:
    return AdminClient(dict(kafka.client_config()))


def faust_broker(kafka: KafkaSettings) -> str:
    """The broker URL Faust is given."""
    return f"kafka://{kafka.bootstrap_servers}"


def registry_client(registry: RegistrySettings) -> dict[str, Any]:
    """Configuration of confluent-kafka's SchemaRegistryClient."""
    return {"url": registry.url, "timeout": int(registry.timeout_s)}
