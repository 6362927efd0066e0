"""PostgreSQL connections from DatabaseSettings (errors never show the password)."""

from __future__ import annotations

import psycopg

from kafkaio.errors import RetryableError

from .settings import DatabaseSettings


def connect(settings: DatabaseSettings, autocommit: bool = False) -> psycopg.Connection:
    try:
        return psycopg.connect(settings.dsn, autocommit=autocommit, connect_timeout=settings.connect_timeout_s)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise RetryableError(f"database {settings.safe_url} unreachable: {reason}") from None
