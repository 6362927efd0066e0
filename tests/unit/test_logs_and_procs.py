from __future__ import annotations

import io
import json
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from kafkaio.errors import ServiceError
from scalp.logs import setup_logging
from scalp.stack.procs import ensure_port_free, port_in_use


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_to_stream_and_file_with_secrets_masked(tmp_path: Path) -> None:
    stream = io.StringIO()
    setup_logging("INFO", tmp_path, "t.jsonl", secrets=["hunter2-token"], stream=stream)
    logging.getLogger("scalp.test").info("connecting to %s with %s", "market_trades[1]@42", "hunter2-token")
    file_lines = (tmp_path / "t.jsonl").read_text().splitlines()
    for text in (stream.getvalue().splitlines()[-1], file_lines[-1]):
        entry = json.loads(text)
        assert entry["level"] == "INFO"
        assert entry["name"] == "scalp.test"
        assert entry["message"] == "connecting to market_trades[1]@42 with ***"
        assert "hunter2" not in text


def test_port_taken_names_the_port_and_the_process() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
        with pytest.raises(ServiceError) as info:
            ensure_port_free("kafka", "127.0.0.1", port)
    message = str(info.value)
    assert f"127.0.0.1:{port} is already taken" in message
    assert f"(pid {os.getpid()})" in message


def test_free_port_passes() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ensure_port_free("kafka", "127.0.0.1", port)


def test_missing_java_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scalp.stack.kafka import Kafka
    from scalp.stack.settings import StackSettings

    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    with pytest.raises(ServiceError) as info:
        Kafka(StackSettings(state_dir=tmp_path / "state")).prepare()
    assert str(info.value) == "java not found; install openjdk-17-jre-headless"


@pytest.mark.usefixtures("restore_logging")
def test_every_line_names_its_service_and_the_file_is_per_service_and_rotated(tmp_path: Path) -> None:
    stream = io.StringIO()
    setup_logging("INFO", tmp_path, None, stream=stream, service="sink", max_bytes=2000, backups=2)
    for i in range(100):
        logging.getLogger("scalp.test").info("line %d of a long enough message to rotate the file", i)
    entry = json.loads(stream.getvalue().splitlines()[-1])
    assert entry["service"] == "sink"
    assert entry["pid"] == os.getpid()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["sink.jsonl", "sink.jsonl.1", "sink.jsonl.2"]  # rotated, two kept
    assert json.loads((tmp_path / "sink.jsonl").read_text().splitlines()[-1])["message"].startswith("line 99 ")


@pytest.mark.usefixtures("restore_logging")
def test_interactive_commands_keep_stdout_for_warnings_while_the_file_has_every_line(tmp_path: Path) -> None:
    stream = io.StringIO()
    setup_logging("INFO", tmp_path, None, stream=stream, service="topics", stream_level="WARNING")
    logging.getLogger("scalp.test").info("details")
    logging.getLogger("scalp.test").warning("attention")
    assert [json.loads(x)["message"] for x in stream.getvalue().splitlines()] == ["attention"]
    assert [json.loads(x)["message"] for x in (tmp_path / "topics.jsonl").read_text().splitlines()] == [
        "details",
        "attention",
    ]


@pytest.mark.usefixtures("restore_logging")
def test_fausts_buffer_full_warning_comes_once_a_minute_with_the_count_held_back(tmp_path: Path) -> None:
    from faust.transport import producer

    from scalp.logs import RepeatLimit

    setup_logging("INFO", tmp_path, None, stream=io.StringIO(), service="streams")
    stream = io.StringIO()
    setup_logging("INFO", tmp_path, None, stream=stream, service="streams")  # configured again: one filter
    (limit,) = [f for f in producer.logger.filters if isinstance(f, RepeatLimit)]
    now = [0.0]
    limit.clock = lambda: now[0]
    for i in range(500):  # a burst: Faust's own logger, as its ProducerBuffer warns
        now[0] = i * 0.06
        producer.logger.warning("producer buffer full size %d", 101 + i % 30)
    producer.logger.warning("something else")
    now[0] = 61.0
    producer.logger.warning("producer buffer full size %d", 140)
    messages = [json.loads(x)["message"] for x in stream.getvalue().splitlines()]
    assert messages == [
        "producer buffer full size 101",
        "something else",
        "producer buffer full size 140 (499 more like it in the 61 s before)",
    ]


def test_ctrl_c_exits_130() -> None:
    from scalp.cliutil import guarded

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as info:
        guarded(interrupted)()
    assert info.value.code == 130


def test_a_stale_pid_file_never_signals_a_stranger(tmp_path: Path) -> None:
    """A pid file whose process died, with the pid since reused by an unrelated process: `stack down` must
    leave that process alone (the pid file holds the start time; an old pid-only file needs our folder)."""
    import subprocess
    import sys

    from scalp.stack.base import ProcessService
    from scalp.stack.postgres import Postgres
    from scalp.stack.procs import read_pid, spawn
    from scalp.stack.settings import StackSettings

    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd="/")
    try:
        service = ProcessService(StackSettings(state_dir=tmp_path), "kafka")
        service.home.mkdir(parents=True)
        for content in (f"{stranger.pid} 12345.0\n", f"{stranger.pid}\n"):  # another start time; pid only
            service.pid_file.write_text(content)
            assert read_pid(service.pid_file) is None
            assert service.stop() is False
        postgres = Postgres(StackSettings(state_dir=tmp_path))
        postgres.data.mkdir(parents=True)
        postgres.pid_file.write_text(f"{stranger.pid}\n{postgres.data}\n")
        assert postgres.pid() is None
        assert stranger.poll() is None  # still running: never signalled
        # a process we started is recognised by its start time
        ours = spawn([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "o.log", service.pid_file)
        assert read_pid(service.pid_file) == ours
        assert service.stop() is True
    finally:
        stranger.kill()
        stranger.wait()
