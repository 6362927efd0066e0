"""Typed settings for the local stack."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

REPO_ROOT = Path(__file__).resolve().parents[2]


def default_state_dir() -> Path:
    """``.scalp/`` in the repository when running from a checkout, else in the working directory."""
    if (REPO_ROOT / "pyproject.toml").exists():
        return REPO_ROOT / ".scalp"
    return Path.cwd() / ".scalp"


class StackSettings(BaseModel):
    """Where the local services keep their files, and what they listen on (127.0.0.1 only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state_dir: Path = Field(default_factory=default_state_dir)
    host: str = "127.0.0.1"
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    kafka_broker_port: int = 19094  # the secured stack's inter-broker listener (mutual TLS)
    kafka_heap: str = "512m"
    registry_port: int = 18081
    registry_version: str = "3.0.9"
    registry_heap: str = "512m"
    postgres_port: int = 15432
    postgres_major: int = 15
    postgres_db: str = "scalp"
    postgres_user: str = "scalp"
    # timescale: TimescaleDB built from its release source (`scalp stack timescaledb`, run by ./run) and
    # preloaded; plain: PostgreSQL with pg_partman. Without a built TimescaleDB the stack runs plain (warned).
    db_flavour: Literal["timescale", "plain"] = "timescale"
    timescaledb_version: str = "2.28.3"  # the last release that supports PostgreSQL 15
    # the release tarball: a path or URL; empty: ../shared/vendor/timescaledb-<version>.tar.gz next to the
    # checkout when it exists, else Timescale's release archive on GitHub
    timescaledb_tarball: str = ""
    # the secured stack (`scalp stack up --secure`): Kafka over SASL_SSL with ACLs, the registry over TLS;
    # `scalp stack up` without it gives back the plain stack
    secure: bool = False
    # `scalp stack up --monitoring`: Prometheus (Debian's) scraping the pipeline's processes on this machine
    prometheus_port: int = 19090
    scrape_interval_s: float = Field(default=5.0, gt=0)
    metrics_retention: str = "15d"
    start_timeout_s: float = Field(default=180.0, gt=0)
    stop_timeout_s: float = Field(default=30.0, gt=0)
