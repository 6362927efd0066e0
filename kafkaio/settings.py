"""Typed settings for Kafka clients and the schema registry.

Security (TLS, SASL) is set here once and reaches every client through :mod:`kafkaio.clients`: the
confluent-kafka producers, consumers and admin client, Faust/aiokafka, and the registry client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettings(BaseModel):
    """Kafka client settings shared by producers, consumers and the admin client."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bootstrap_servers: str = "127.0.0.1:19092"
    topic_prefix: str = ""
    client_id: str = "scalp-pipeline"
    request_timeout_ms: int = Field(default=30_000, gt=0)
    delivery_timeout_ms: int = Field(default=120_000, gt=0)
    linger_ms: int = Field(default=5, ge=0)
    # topics are created with (existing ones raised to) at least this retention (-1: keep forever); nothing
    # lowers it. Kafka deletes records by their timestamp, which is the venue's event time: a tape of past days
    # (the demo, the tests) older than a topic's retention (7 days for ticks) is deleted minutes after it is
    # written unless this is set.
    min_retention_ms: int | None = Field(default=None, ge=-1)
    # a dead letter's body is cut to this many bytes (its headers keep the original size): whatever arrived,
    # the dead letter fits in a Kafka message (a 1 MB frame used to fail with MSG_SIZE_TOO_LARGE)
    dead_letter_max_bytes: int = Field(default=262_144, ge=1024, le=900_000)
    # topics this project creates (catalog topics, their dead letters, the streams worker's state): replicas
    # and, when set, min.insync.replicas (a cluster of three: 3 and 2). 1 for the local single-node stack.
    replication_factor: int = Field(default=1, ge=1)
    min_insync_replicas: int | None = Field(default=None, ge=1)
    # --- security: one place for every client (librdkafka names in parentheses) -------------------------
    security_protocol: SecurityProtocol = "PLAINTEXT"  # (security.protocol)
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"  # (sasl.mechanism) with SASL_*
    sasl_username: str | None = None  # (sasl.username)
    sasl_password: SecretStr | None = None  # (sasl.password)
    ssl_ca_location: Path | None = None  # (ssl.ca.location) CA that signed the brokers' certificates
    ssl_certificate_location: Path | None = None  # (ssl.certificate.location) client certificate (mTLS)
    ssl_key_location: Path | None = None  # (ssl.key.location)
    ssl_key_password: SecretStr | None = None  # (ssl.key.password)
    ssl_check_hostname: bool = True  # (ssl.endpoint.identification.algorithm https / none)
    # any other librdkafka property, passed through as it is (config file ``kafka.properties``, or an
    # environment variable KAFKA_PROP_<NAME> with dots as underscores: KAFKA_PROP_SOCKET_KEEPALIVE_ENABLE)
    properties: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_") and not (self.sasl_username and self.sasl_password):
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_username and sasl_password")
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            raise ValueError("ssl_certificate_location and ssl_key_location go together (a client certificate)")
        if self.min_insync_replicas is not None and self.min_insync_replicas > self.replication_factor:
            raise ValueError("min_insync_replicas is above replication_factor: no write could ever succeed")
        return self

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    def topic(self, name: str) -> str:
        """The physical topic name of catalog topic ``name`` (with the optional prefix)."""
        return f"{self.topic_prefix}{name}"

    def client_config(self) -> dict[str, str | int]:
        """Base librdkafka configuration for any client: address, identity, security, passthrough."""
        config: dict[str, str | int] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
        }
        if self.sasl:
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = str(self.sasl_username)
            config["sasl.password"] = self.sasl_password.get_secret_value() if self.sasl_password else ""
        if self.tls:
            if self.ssl_ca_location is not None:
                config["ssl.ca.location"] = str(self.ssl_ca_location)
            if self.ssl_certificate_location is not None and self.ssl_key_location is not None:
                config["ssl.certificate.location"] = str(self.ssl_certificate_location)
                config["ssl.key.location"] = str(self.ssl_key_location)
            if self.ssl_key_password is not None:
                config["ssl.key.password"] = self.ssl_key_password.get_secret_value()
            config["ssl.endpoint.identification.algorithm"] = "https" if self.ssl_check_hostname else "none"
        config.update(self.properties)
        return config

    def topic_configs(self) -> dict[str, str]:
        """Configs every topic this project creates carries (besides the catalog's own)."""
        return {} if self.min_insync_replicas is None else {"min.insync.replicas": str(self.min_insync_replicas)}


class RegistrySettings(BaseModel):
    """Confluent-compatible schema registry (Apicurio's ccompat API)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = "http://127.0.0.1:18081/apis/ccompat/v7"
    timeout_s: float = Field(default=10.0, gt=0)
    compatibility: str = "BACKWARD"
    basic_auth_user: str | None = None  # HTTP basic auth (with basic_auth_password)
    basic_auth_password: SecretStr | None = None
    ssl_ca_location: Path | None = None  # CA that signed the registry's certificate (https URLs)

    @model_validator(mode="after")
    def _complete(self) -> RegistrySettings:
        if (self.basic_auth_user is None) != (self.basic_auth_password is None):
            raise ValueError("basic_auth_user and basic_auth_password go together")
        return self
