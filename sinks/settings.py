"""Typed settings for the database."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from kafkaio.redact import redact_url


class DatabaseSettings(BaseModel):
    """PostgreSQL / TimescaleDB connection. The URL is a secret: it may carry a password."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: SecretStr = SecretStr("postgresql://scalp@127.0.0.1:15432/scalp")
    connect_timeout_s: int = Field(default=10, gt=0)

    @property
    def dsn(self) -> str:
        return self.url.get_secret_value()

    @property
    def safe_url(self) -> str:
        return redact_url(self.dsn)


class SinkSettings(BaseModel):
    """The sink worker: batching, bounds and operations."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    group_id: str = "scalp-sink"
    batch_max_rows: int = Field(default=20_000, gt=0)
    batch_max_ms: int = Field(default=500, gt=0)
    max_buffered_records: int = Field(default=200_000, gt=0)
    retry_base_s: float = Field(default=0.5, gt=0)
    retry_cap_s: float = Field(default=15.0, gt=0)
    http_port: int = Field(default=9464, ge=0)  # /metrics and /healthz; 0 disables
    http_host: str = "127.0.0.1"
    # consumer group: a dead member's partitions move after session_timeout_ms; with a stable
    # instance_id (static membership) a restarted worker takes its partitions back at once
    session_timeout_ms: int = Field(default=10_000, ge=6_000)
    instance_id: str | None = None
    # decode a batch's values of plain tables at once and COPY them as CSV (sinks/columnar.py); off: row
    # by row only (the fast path falls back to that by itself for any batch it cannot write)
    columnar: bool = True
