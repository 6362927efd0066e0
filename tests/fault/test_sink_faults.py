"""Sink fault tests with real processes: SIGKILL, rebalances, a cut database connection, a PostgreSQL restart.

Exactly once is proven by (a) the table holding exactly the topic's records by key, (b) the stored offsets
equalling the end offsets, and (c) the natural-key guard never having had to drop a duplicate (the worker
logs "duplicate natural keys" whenever it does)."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from scalp.settings import AppSettings
from schemas.admin import TopicAdmin
from schemas.catalog import catalog
from tests.proxy import CuttableProxy
from tests.sink_util import migrated, producer_for, quotes, scalar, sink_config, start_sink

pytestmark = pytest.mark.fault


def fill(services: AppSettings, prefix: str, n: int) -> None:
    producer, kafka, _ = producer_for(services, prefix)
    TopicAdmin(kafka, catalog()).create_all()
    for record in quotes(n):
        producer.produce("market_quotes", record)
    producer.flush(120)


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def assert_exactly_once(dsn: str, n: int, outputs: list[str]) -> None:
    assert scalar(dsn, "SELECT count(*) FROM market_quotes") == n
    assert scalar(dsn, "SELECT count(DISTINCT seq) FROM market_quotes") == n
    assert scalar(dsn, "SELECT min(seq) FROM market_quotes") == 0
    assert scalar(dsn, "SELECT max(seq) FROM market_quotes") == n - 1
    assert scalar(dsn, "SELECT sum(next_offset) FROM sink_offsets WHERE topic LIKE '%market_quotes'") == n
    for out in outputs:
        assert "duplicate natural keys" not in out


def test_sigkill_at_random_points_loses_and_doubles_nothing(
    services: AppSettings, fresh_db: str, prefix: str, tmp_path: Path
) -> None:
    n = 1_000_000
    dsn = migrated(fresh_db)
    fill(services, prefix, n)
    config = sink_config(tmp_path, instance="killme")
    rng = random.Random(7)
    outputs = []
    for k in range(4):
        # killed at a random point of its progress (the stored offsets), whatever the sink's speed
        target = int(n * (k + rng.uniform(0.2, 0.8)) / 5)
        proc = start_sink(config, dsn, prefix)
        deadline = time.monotonic() + 120
        while scalar(dsn, "SELECT coalesce(sum(next_offset), 0) FROM sink_offsets") < target:
            assert proc.poll() is None, "the sink exited before it was killed"
            assert time.monotonic() < deadline, f"no progress to {target} rows"
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 0.1))  # and somewhere inside a batch
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        outputs.append(out)
        assert proc.returncode == -signal.SIGKILL
    written_before_final = scalar(dsn, "SELECT count(*) FROM market_quotes")
    assert 0 < written_before_final < n
    outputs.append(finish(start_sink(config, dsn, prefix, "--until-idle", "3")))
    assert_exactly_once(dsn, n, outputs)


def test_two_workers_with_rebalances_mid_stream(
    services: AppSettings, fresh_db: str, prefix: str, tmp_path: Path
) -> None:
    n = 300_000
    dsn = migrated(fresh_db)
    fill(services, prefix, n)
    first = start_sink(sink_config(tmp_path, instance="a", batch_max_rows=5000), dsn, prefix)
    time.sleep(2.0)
    second = start_sink(sink_config(tmp_path, instance="b", batch_max_rows=5000), dsn, prefix, "--until-idle", "4")
    time.sleep(3.0)
    first.send_signal(signal.SIGTERM)  # graceful: flushes its batch and leaves the group -> rebalance
    out_first = finish(first, 60)
    out_second = finish(second)
    assert "assigned" in out_second
    assert_exactly_once(dsn, n, [out_first, out_second])


def test_cut_database_connection_mid_batch(services: AppSettings, fresh_db: str, prefix: str, tmp_path: Path) -> None:
    n = 300_000
    dsn = migrated(fresh_db)
    fill(services, prefix, n)
    parts = urlsplit(dsn)
    proxy = CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    via_proxy = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
    try:
        proc = start_sink(
            sink_config(tmp_path, batch_max_rows=5000, retry_base_s=0.2), via_proxy, prefix, "--until-idle", "4"
        )
        # the server commits, its acknowledgement is lost with the connection: the retry must find the
        # batch's offsets moved and drop it before it writes a row (not meet its own rows as duplicates)
        proxy.cut_on_reply(b"COMMIT\x00", every=6, times=3)
        cut = 0
        for _ in range(2):
            time.sleep(1.5)
            cut += proxy.cut()  # and anywhere else, mid-batch included
        out = finish(proc)
    finally:
        proxy.close()
    assert cut > 0
    assert proxy.swallowed > 0
    assert "partitions paused" in out
    assert "acknowledgement was lost" in out
    assert_exactly_once(dsn, n, [out])


def test_postgres_restart_mid_run(
    services: AppSettings,
    local_stack,
    fresh_db: str,
    prefix: str,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    n = 300_000
    dsn = migrated(fresh_db)
    fill(services, prefix, n)
    proc = start_sink(sink_config(tmp_path, batch_max_rows=5000, retry_base_s=0.3), dsn, prefix, "--until-idle", "5")
    time.sleep(2.0)
    local_stack.postgres.stop()
    time.sleep(2.0)
    local_stack.postgres.start()
    out = finish(proc)
    assert "partitions paused" in out or "unreachable" in out
    assert_exactly_once(dsn, n, [out])
