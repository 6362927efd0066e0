"""`scalp stack` and `scalp demo` as a user runs them, against the running local stack."""

from __future__ import annotations

import re

from schemas.catalog import catalog
from tests.cli_util import scalp


def test_stack_up_twice_is_a_no_op(local_stack) -> None:  # type: ignore[no-untyped-def]
    pids = {s.name: s.pid for s in local_stack.status()}
    proc = scalp("stack", "up")
    assert proc.returncode == 0, proc.stderr
    assert "already running" in proc.stdout
    for service in ("postgres", "kafka", "registry"):
        assert f"{service}: already running" in proc.stderr
    assert {s.name: s.pid for s in local_stack.status()} == pids


def test_stack_status_reports_every_service_healthy(local_stack) -> None:  # type: ignore[no-untyped-def]
    proc = scalp("stack", "status")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for service in ("postgres", "kafka", "registry"):
        assert re.search(rf"{service}\s+│\s+healthy", proc.stdout), proc.stdout


def test_topics_create_is_idempotent_and_list_shows_them(local_stack) -> None:  # type: ignore[no-untyped-def]
    first = scalp("topics", "create")
    assert first.returncode == 0, first.stderr
    second = scalp("topics", "create")
    assert second.returncode == 0
    topics = 2 * len(catalog().names())  # each with its dead-letter topic
    assert re.search(rf"topics: 0 created, {topics} already existed", second.stdout), second.stdout
    listing = scalp("topics", "list")
    assert listing.returncode == 0
    assert re.search(r"market_quotes\s+│\s+3\s+│", listing.stdout)
    assert "market_quotes.dlq" in listing.stdout


def test_topics_check_round_trips_every_topic(local_stack) -> None:  # type: ignore[no-untyped-def]
    proc = scalp("topics", "check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    n = len(catalog().names())
    assert f"topics check: {n}/{n} topics round-tripped identically" in proc.stdout
    assert proc.stdout.count("identical") >= n + 1


def test_kraft_format_accepts_a_cluster_id_starting_with_a_dash(local_stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Random base64url cluster ids start with '-' one time in 64; the storage tool must still format."""
    import shutil

    from scalp.stack.kafka import Kafka
    from scalp.stack.settings import StackSettings

    kafka = Kafka(StackSettings(state_dir=tmp_path))
    kafka.home.mkdir(parents=True)
    shutil.copytree(local_stack.kafka.lib, kafka.lib)
    (kafka.home / "cluster.id").write_text("-AbCdEfGhIjKlMnOpQrStU")
    kafka.prepare()
    assert "cluster.id=-AbCdEfGhIjKlMnOpQrStU" in (kafka.data / "meta.properties").read_text()
