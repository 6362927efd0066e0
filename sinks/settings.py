"""Typed settings for the database."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe for logs and errors)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


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
