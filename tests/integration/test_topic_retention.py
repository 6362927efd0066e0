"""Topic retention against the real broker: history older than a topic keeps is refused before it is
written (Kafka deletes by the record's venue timestamp), a floor raises retention, and nothing lowers it."""

from __future__ import annotations

import time

import pytest

from kafkaio.admin import DAY_MS, TopicAdmin
from kafkaio.errors import ConfigError
from scalp.settings import AppSettings
from schemas.catalog import catalog
from tests.cli_util import scalp

DAY_NS = DAY_MS * 1_000_000
TICKS = ["market_trades", "market_quotes"]  # 7 days in the catalog


def test_history_older_than_the_retention_is_refused_and_a_floor_keeps_it(services: AppSettings, prefix: str) -> None:
    kafka = services.kafka.model_copy(update={"topic_prefix": prefix, "min_retention_ms": None})
    admin = TopicAdmin(kafka, catalog())
    admin.create_all(with_dlq=False)
    assert admin.retention_ms([kafka.topic(t) for t in TICKS]) == {kafka.topic(t): 7 * DAY_MS for t in TICKS}
    now = time.time_ns()
    admin.check_kept(TICKS, now - 6 * DAY_NS, now, "a window")  # a day left: allowed
    with pytest.raises(ConfigError) as refused:
        admin.check_kept(TICKS, now - 7 * DAY_NS + 30 * 60 * 10**9, now, "a window")  # gone within the hour
    message = str(refused.value)
    assert f"{prefix}market_trades keeps 7 days" in message
    assert "SCALP_MIN_RETENTION_MS=-1" in message
    assert "(8 days)" in message

    floored = TopicAdmin(kafka.model_copy(update={"min_retention_ms": 30 * DAY_MS}), catalog())
    floored.create_all(with_dlq=False)
    assert floored.retention_ms([kafka.topic("market_quotes")]) == {kafka.topic("market_quotes"): 30 * DAY_MS}
    floored.check_kept(TICKS, now - 20 * DAY_NS, now, "a window")

    forever = TopicAdmin(kafka.model_copy(update={"min_retention_ms": -1}), catalog())
    forever.create_all(with_dlq=False)
    forever.check_kept(TICKS, now - 400 * DAY_NS, now, "a window")
    # a later run without the floor reconciles the other configs but keeps the longer retention
    admin.create_all(with_dlq=False)
    assert set(admin.retention_ms([kafka.topic(t) for t in TICKS]).values()) == {-1}
    admin.check_kept(TICKS, now - 400 * DAY_NS, now, "a window")


def test_backfill_of_expired_history_exits_2_before_fetching(services: AppSettings, prefix: str) -> None:
    env = {
        "POLYGON_API_KEY": "x",
        "POLYGON_REST_URL": "http://127.0.0.1:9",  # nothing listens: a fetch would fail differently
        "SCALP_TOPIC_PREFIX": prefix,
        "SCALP_MIN_RETENTION_MS": "",  # the tests set -1 for every run; unset here
    }
    proc = scalp("backfill", "--symbols", "SPY", "--from", "2026-01-05", "--to", "2026-01-06", env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "the backfill window starts at 2026-01-05 05:00 UTC" in proc.stderr
    assert f"{prefix}market_trades keeps 7 days" in proc.stderr
    assert "SCALP_MIN_RETENTION_MS=-1" in proc.stderr
