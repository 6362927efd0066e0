"""Sink fault tests with real processes: SIGKILL, rebalances, a cut database connection, a PostgreSQL restart.

Exactly once is proven by (a) the table holding exactly the topic's records by key, (b) the stored offsets
equalling the end offsets, and (c) the natural-key guard never having had to drop a duplicate (the worker
logs "duplicate natural keys" whenever it does)."""

from __future__ import annotations

import random
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml
from confluent_kafka.admin import AdminClient

from kafkaio.admin import TopicAdmin
from kafkaio.producer import AvroProducer
from scalp.settings import AppSettings
from schemas.catalog import catalog
from tests.proxy import CuttableProxy
from tests.sink_util import migrated, producer_for, quotes, scalar, sink_config, start_sink

pytestmark = pytest.mark.fault


def quotes_producer(services: AppSettings, prefix: str) -> AvroProducer:
    """A producer for the test's topics, created first."""
    producer, kafka, _ = producer_for(services, prefix)
    TopicAdmin(kafka, catalog()).create_all()
    return producer


def fill(services: AppSettings, prefix: str, n: int) -> None:
    publish(quotes_producer(services, prefix), quotes(n))


def publish(producer: AvroProducer, records: list[dict[str, Any]]) -> None:
    for record in records:
        producer.produce("market_quotes", record)
    producer.flush(120)


def wait_for_progress(dsn: str, proc: subprocess.Popen[str], target: int, timeout: float = 120) -> None:
    """Until the sink's stored offsets reach ``target`` (a point of its progress, whatever its speed)."""
    deadline = time.monotonic() + timeout
    while scalar(dsn, "SELECT coalesce(sum(next_offset), 0) FROM sink_offsets") < target:
        assert proc.poll() is None, f"the sink exited before it reached {target} rows"
        assert time.monotonic() < deadline, f"no progress to {target} rows"
        time.sleep(0.02)


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
        proc = start_sink(config, dsn, prefix)
        wait_for_progress(dsn, proc, int(n * (k + rng.uniform(0.2, 0.8)) / 5))
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
    records = quotes(n)
    producer = quotes_producer(services, prefix)
    publish(producer, records[: n // 2])
    config_a = sink_config(tmp_path, instance="a", batch_max_rows=5000)
    first = start_sink(config_a, dsn, prefix)
    wait_for_progress(dsn, first, n // 4)
    # the second worker joins once the first has written a quarter (often while it still writes): a rebalance
    second = start_sink(sink_config(tmp_path, instance="b", batch_max_rows=5000), dsn, prefix, "--until-idle", "4")
    group = yaml.safe_load(config_a.read_text())["sink"]["group_id"]
    admin = AdminClient({"bootstrap.servers": services.kafka.bootstrap_servers})
    deadline = time.monotonic() + 120
    while len(admin.describe_consumer_groups([group])[group].result(10).members) < 2:
        assert first.poll() is None, "the first sink exited before the group had both"
        assert second.poll() is None, "the second sink exited before the group had both"
        assert time.monotonic() < deadline, "the second worker never joined the group"
        time.sleep(0.1)
    # the rest arrives while the first leaves (graceful: flushes its batch and leaves the group -> rebalance)
    rest = threading.Thread(target=publish, args=(producer, records[n // 2 :]))
    rest.start()
    try:
        wait_for_progress(dsn, first, n // 2 + n // 10)
        first.send_signal(signal.SIGTERM)
    finally:
        rest.join()
    out_first = finish(first, 60)
    out_second = finish(second)
    assert "assigned" in out_second
    assert rows_written(out_first) > 0
    assert rows_written(out_second) > 0
    assert rows_written(out_first) + rows_written(out_second) == n
    assert_exactly_once(dsn, n, [out_first, out_second])


def rows_written(out: str) -> int:
    found = re.search(r"sink stopped: (\d+) rows written", out)
    assert found, out[-3000:]
    return int(found.group(1))


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
        for share in (0.4, 0.7):
            # at points of the sink's progress (whatever its speed or start-up time), and anywhere in a batch:
            # retried until a connection is there to cut (not while the sink is between a cut and its reconnect)
            wait_for_progress(dsn, proc, int(n * share))
            deadline = time.monotonic() + 60
            while not (cuts := proxy.cut()):
                assert time.monotonic() < deadline, "the sink held no database connection to cut"
                time.sleep(0.01)
            cut += cuts
        out = finish(proc)
    finally:
        proxy.close()
    assert cut > 0
    assert proxy.swallowed > 0
    assert "partitions paused" in out
    assert "acknowledgement was lost" in out
    assert_exactly_once(dsn, n, [out])


@pytest.mark.exclusive  # stops the shared PostgreSQL
def test_postgres_restart_mid_run(
    services: AppSettings,
    local_stack,
    fresh_db: str,
    prefix: str,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    n = 300_000
    dsn = migrated(fresh_db)
    records = quotes(n)
    # one producer throughout: its schema id is known before the outage (the registry keeps its
    # storage in this PostgreSQL, and cannot answer while it is down)
    producer = quotes_producer(services, prefix)
    publish(producer, records[: n // 2])
    proc = start_sink(sink_config(tmp_path, batch_max_rows=5000, retry_base_s=0.3), dsn, prefix, "--until-idle", "10")
    # the first half written, PostgreSQL goes down and the second half arrives: the sink must hold those
    # batches through the outage, whatever its speed (a fixed sleep let a fast sink finish beforehand)
    wait_for_progress(dsn, proc, n // 2)
    local_stack.postgres.stop()
    try:
        publish(producer, records[n // 2 :])
        time.sleep(2.0)
        assert proc.poll() is None
    finally:
        local_stack.postgres.start()
    out = finish(proc)
    assert "partitions paused" in out
    assert_exactly_once(dsn, n, [out])
