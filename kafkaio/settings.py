"""Typed settings for Kafka clients and the schema registry."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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

    def topic(self, name: str) -> str:
        """The physical topic name of catalog topic ``name`` (with the optional prefix)."""
        return f"{self.topic_prefix}{name}"

    def client_config(self) -> dict[str, str | int]:
        """Base librdkafka configuration for any client."""
        return {"bootstrap.servers": self.bootstrap_servers, "client.id": self.client_id}


class RegistrySettings(BaseModel):
    """Confluent-compatible schema registry (Apicurio's ccompat API)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = "http://127.0.0.1:18081/apis/ccompat/v7"
    timeout_s: float = Field(default=10.0, gt=0)
    compatibility: str = "BACKWARD"
