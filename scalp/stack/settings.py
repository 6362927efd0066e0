"""Typed settings for the local stack."""

from __future__ import annotations

from pathlib import Path

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
    kafka_heap: str = "512m"
    registry_port: int = 18081
    registry_version: str = "3.0.9"
    registry_heap: str = "512m"
    postgres_port: int = 15432
    postgres_major: int = 15
    postgres_db: str = "scalp"
    postgres_user: str = "scalp"
    start_timeout_s: float = Field(default=180.0, gt=0)
    stop_timeout_s: float = Field(default=30.0, gt=0)
