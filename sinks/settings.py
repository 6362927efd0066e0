"""Typed settings for the database."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from kafkaio.redact import redact_url

DbRole = Literal["owner", "sink", "router", "analyst"]


class DatabaseSettings(BaseModel):
    """PostgreSQL / TimescaleDB connections, one per role (least privilege). URLs are secrets: they may carry
    passwords. ``url`` is the owner's (migrations, maintenance); each other role's URL falls back to it:

    - ``sink_url`` (SINK_DATABASE_URL): the sink worker and label writes, a member of ``scalp_writer``;
    - ``router_url`` (ROUTER_DATABASE_URL): ``scalp execute`` (audit trail, account lease), ``scalp_router``;
    - ``analyst_url`` (ANALYST_DATABASE_URL): research reads and status reports, ``scalp_reader``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: SecretStr = SecretStr("postgresql://scalp@127.0.0.1:15432/scalp")
    sink_url: SecretStr | None = None
    router_url: SecretStr | None = None
    analyst_url: SecretStr | None = None
    connect_timeout_s: int = Field(default=10, gt=0)
    # the Parquet archive of ticks past retention (SCALP_ARCHIVE_DIR): where `db maintain` writes them and
    # replays read the days the tables and Kafka no longer hold; unset: no archive
    archive_dir: Path | None = None

    def role(self, role: DbRole) -> DatabaseSettings:
        """These settings connecting as ``role`` (its URL, else the owner's)."""
        url = None if role == "owner" else getattr(self, f"{role}_url")
        return self if url is None else self.model_copy(update={"url": url})

    def urls(self) -> list[str]:
        """Every URL set (for checks and masking)."""
        found = [self.url, self.sink_url, self.router_url, self.analyst_url]
        return [u.get_secret_value() for u in found if u is not None]

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
