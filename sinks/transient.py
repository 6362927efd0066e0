"""Database work that another try can get past: deadlocks, serialization failures and TimescaleDB's
"tuple concurrently deleted/updated" (its background workers change the catalog rows a migration or a
chunk drop also touches). The work is rolled back whole and run again a few times; other errors are
raised at once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg

log = logging.getLogger(__name__)
T = TypeVar("T")
ATTEMPTS = 4


def is_transient(exc: psycopg.Error) -> bool:
    """A failure that another try of the same transaction can get past."""
    if isinstance(exc, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure):
        return True
    return isinstance(exc, psycopg.errors.InternalError_) and "concurrently" in str(exc)


def retry_transient(
    conn: psycopg.Connection, what: str, work: Callable[[], T], attempts: int = ATTEMPTS, pause_s: float = 0.5
) -> T:
    """Run ``work`` (one transaction: it commits its own, or runs inside ``conn.transaction()``); after a
    transient failure roll back and run it again, up to ``attempts`` times in all."""
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except psycopg.Error as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            if not conn.autocommit:
                conn.rollback()
            log.warning("%s: %s; trying again (%d/%d)", what, str(exc).strip().splitlines()[0], attempt + 1, attempts)
            time.sleep(pause_s * attempt)
    raise AssertionError("unreachable")
