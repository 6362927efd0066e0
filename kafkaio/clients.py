"""Every Kafka client of the project is built here, from one :class:`KafkaSettings`.

- :func:`consumer`: a confluent-kafka consumer. Never auto-commits: sinks commit offsets in their own
  database transaction, readers commit nothing, and Faust commits its own group through aiokafka.
- :func:`producer`: a plain idempotent confluent-kafka producer (dead letters); catalog records go through
  :class:`kafkaio.producer.AvroProducer`, which builds its client here too.
- :func:`admin`: the admin client.
- :func:`faust_options`: the broker URL, credentials and topic settings Faust/aiokafka is given.
- :func:`registry_client`: the schema registry client configuration.

Security (TLS, SASL PLAIN/SCRAM) and the librdkafka passthrough come from :class:`KafkaSettings` and reach
every one of them from here.
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
    """The admin client (the same address, security and passthrough as every other client)."""
    return AdminClient(dict(kafka.client_config()))


def faust_broker(kafka: KafkaSettings) -> str:
    """The broker URL Faust is given."""
    return ";".join(f"kafka://{server.strip()}" for server in kafka.bootstrap_servers.split(",") if server.strip())


def ssl_context(kafka: KafkaSettings) -> Any:
    """The TLS context aiokafka connects with (None without TLS): the CA, the client certificate, and the
    host name check, as librdkafka is given them."""
    if not kafka.tls:
        return None
    from aiokafka.helpers import create_ssl_context

    context = create_ssl_context(
        cafile=str(kafka.ssl_ca_location) if kafka.ssl_ca_location else None,
        certfile=str(kafka.ssl_certificate_location) if kafka.ssl_certificate_location else None,
        keyfile=str(kafka.ssl_key_location) if kafka.ssl_key_location else None,
        password=kafka.ssl_key_password.get_secret_value() if kafka.ssl_key_password else None,
    )
    context.check_hostname = kafka.ssl_check_hostname
    return context


def faust_options(kafka: KafkaSettings) -> dict[str, Any]:
    """What a Faust app is built with to reach Kafka as every other client does: the brokers, the
    credentials (SASL over TLS or not, or TLS alone), and the replication of the topics it creates."""
    import faust

    options: dict[str, Any] = {
        "broker": faust_broker(kafka),
        "topic_replication_factor": kafka.replication_factor,
    }
    context = ssl_context(kafka)
    if kafka.sasl:
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
        options["broker_credentials"] = faust.SASLCredentials(
            username=kafka.sasl_username, password=password, ssl_context=context, mechanism=kafka.sasl_mechanism
        )
    elif context is not None:
        options["broker_credentials"] = faust.SSLCredentials(context)
    return options


def registry_client(registry: RegistrySettings) -> dict[str, Any]:
    """Configuration of confluent-kafka's SchemaRegistryClient."""
    config: dict[str, Any] = {"url": registry.url, "timeout": int(registry.timeout_s)}
    if registry.basic_auth_user is not None and registry.basic_auth_password is not None:
        config["basic.auth.user.info"] = f"{registry.basic_auth_user}:{registry.basic_auth_password.get_secret_value()}"
    if registry.ssl_ca_location is not None:
        config["ssl.ca.location"] = str(registry.ssl_ca_location)
    return config
