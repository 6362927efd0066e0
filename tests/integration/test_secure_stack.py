"""The secured local stack (`scalp stack up --secure`): Kafka over SASL_SSL with SCRAM-SHA-512 and an ACL per
service principal, the registry over TLS, on a CA and passwords it generates. It runs beside the plain stack
(its own state dir and ports). The core path runs through it, each command as its own principal; each
refusal the issue names is a real one from the broker; no generated secret reaches a log, topic or table;
and `scalp stack up` without --secure gives back the plain stack."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
import yaml
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from scalp.settings import DEFAULT_CONFIG
from schemas.catalog import catalog
from tests.execution_util import TEST_LIMITS
from tests.streams_util import loose_policy

REPO = Path(__file__).resolve().parents[2]
PORTS = {"kafka_port": 29092, "kafka_controller_port": 29093, "kafka_broker_port": 29094}
PORTS |= {"registry_port": 28081, "postgres_port": 25432}
pytestmark = pytest.mark.timeout(900)


class Secured:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.logs = root / "logs"
        self.config = root / "pipeline.yaml"
        data = yaml.safe_load(DEFAULT_CONFIG.read_text())
        data["stack"] = {"state_dir": str(self.state), **PORTS}
        data.setdefault("streams", {})["http_port"] = 0
        data.setdefault("sink", {})["http_port"] = 0
        data["execution"] = {"poll_interval_s": 0.5, "limits": TEST_LIMITS, "http_port": 0}
        self.config.write_text(yaml.safe_dump(data))

    def run(self, *args: str, role: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """`scalp` as a user of the secured stack would run it: with `scalp stack env [--role]` exported."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SCHEMA_REGISTRY", "DATABASE_"))}
        env.update(SCALP_TOPIC_PREFIX="", SCALP_MIN_RETENTION_MS="-1", SCALP_LOG_DIR=str(self.logs))
        env.pop("SCALP_CONFIG", None)
        if role != "none":
            env.update(self.exports(role))
        return subprocess.run(
            [sys.executable, "-m", "scalp.cli", "--config", str(self.config), *args],
            capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout, check=False,
        )  # fmt: skip

    def exports(self, role: str | None = None) -> dict[str, str]:
        proc = self.run("stack", "env", *(["--role", role] if role else []), role="none")
        assert proc.returncode == 0, proc.stderr
        words = [shlex.split(line.removeprefix("export "))[0] for line in proc.stdout.splitlines()]
        return dict(word.split("=", 1) for word in words)  # as `eval "$(scalp stack env)"` sets them

    def secrets(self) -> list[str]:
        body = json.loads((self.state / "secure" / "secrets.json").read_text())
        return [v for section in body.values() for v in section.values()]

    def kafka(self, role: str | None = None, **extra: Any) -> dict[str, Any]:
        env = self.exports(role)
        return {
            "bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"],
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": env["KAFKA_SASL_USERNAME"],
            "sasl.password": env["KAFKA_SASL_PASSWORD"],
            "ssl.ca.location": env["KAFKA_SSL_CA_LOCATION"],
            **extra,
        }


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    s = Secured(tmp_path_factory.mktemp("secured"))
    up = s.run("stack", "up", "--secure", role="none")
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        for step in (("db", "migrate"), ("topics", "create")):  # the operator's part
            proc = s.run(*step)
            assert proc.returncode == 0, proc.stdout + proc.stderr
        yield s
        # `scalp stack up` without --secure gives back the plain stack, PLAINTEXT and without ACLs
        plain = s.run("stack", "up", role="none")
        assert plain.returncode == 0, plain.stdout + plain.stderr
        assert "kafka: the secured kafka stopped" in plain.stderr
        assert s.exports()["SCHEMA_REGISTRY_URL"].startswith("http://")
        assert "KAFKA_SECURITY_PROTOCOL" not in s.exports()
        metadata = _producer({"bootstrap.servers": f"127.0.0.1:{PORTS['kafka_port']}"}).list_topics(timeout=20)
        assert metadata.topics == {} or all(not t.startswith("market_") for t in metadata.topics)  # its own data
    finally:
        s.run("stack", "down", role="none")


def _producer(config: dict[str, Any]) -> Producer:
    return Producer({"message.timeout.ms": 8000, "log_level": 0, **config})


def _produce(config: dict[str, Any], topic: str) -> KafkaError | None:
    errors: list[KafkaError | None] = []
    producer = _producer(config)
    producer.produce(topic, b"probe", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(20)
    return errors[0] if errors else None


def test_each_principal_is_refused_what_it_may_not_do(secured: Secured) -> None:
    topic_refused = KafkaError.TOPIC_AUTHORIZATION_FAILED
    # an anonymous client: no TLS, no login
    assert _produce({"bootstrap.servers": f"127.0.0.1:{PORTS['kafka_port']}"}, "market_trades") is not None
    # the ingest principal may write market data, never order intents
    assert _produce(secured.kafka("ingest"), "market_trades.dlq") is None
    assert _produce(secured.kafka("ingest"), "order_intents").code() == topic_refused  # type: ignore[union-attr]
    # the analyst reads only; streams may not write orders
    assert _produce(secured.kafka("analyst"), "features").code() == topic_refused  # type: ignore[union-attr]
    assert _produce(secured.kafka("streams"), "orders").code() == topic_refused  # type: ignore[union-attr]
    # a wrong password, and a client that trusts another CA (the system's), are refused at the door
    assert _produce(secured.kafka("ingest", **{"sasl.password": "wrong-password"}), "market_trades") is not None
    system_ca = "/etc/ssl/certs/ca-certificates.crt"
    assert _produce(secured.kafka("ingest", **{"ssl.ca.location": system_ca}), "market_trades") is not None
    # the registry speaks TLS only, with a certificate of the stack's CA
    url = secured.exports()["SCHEMA_REGISTRY_URL"]
    assert url.startswith("https://")
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{url}/subjects", timeout=5)  # the system's CAs do not know it
    assert requests.get(f"{url}/subjects", timeout=5, verify=secured.exports()["SCHEMA_REGISTRY_CA_LOCATION"]).ok
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url.replace("https://", "http://") + "/subjects", timeout=5)
    # PostgreSQL: TLS and a password for everyone (no trust anywhere), its socket for its own user only
    port = PORTS["postgres_port"]
    for dsn in (
        f"postgresql://scalp@127.0.0.1:{port}/scalp?sslmode=disable",
        f"postgresql://scalp@127.0.0.1:{port}/scalp",
    ):
        with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry|no password supplied"):
            psycopg.connect(dsn, connect_timeout=5)
    socket = next((secured.state / "postgres-secure" / "run").glob(".s.PGSQL.*[0-9]"))
    assert socket.stat().st_mode & 0o777 == 0o700
    # the analyst's database role reads and may not write; the sink's may not change the schema
    with psycopg.connect(secured.exports("analyst")["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT count(*) FROM features").fetchone() is not None
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO config_snapshots (digest, kind, body) VALUES ('x', 'x', '{}')")
    with (
        psycopg.connect(secured.exports("sink")["DATABASE_URL"]) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("DROP TABLE features")
    # the generated files are the owner's alone (the CA certificate is public)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (secured.state / "secure").iterdir()}
    assert modes.pop("ca.pem") == 0o644
    assert modes.pop("server.pem") == 0o644
    assert set(modes.values()) == {0o600}, modes
    assert (secured.state / "secure").stat().st_mode & 0o777 == 0o700


def test_the_core_path_runs_each_command_as_its_principal_and_no_secret_leaks(secured: Secured, tmp_path: Path) -> None:
    policy = loose_policy(tmp_path)
    for day, start, end in (("2026-11-19", "15:30", "16:00"), ("2026-11-20", "09:30", "10:00")):
        ingest = secured.run(
            "ingest", "synthetic", "--date", day, "--start", start, "--end", end, "--symbols", "SPY,QQQ", role="ingest"
        )
        assert ingest.returncode == 0, ingest.stdout[-3000:] + ingest.stderr[-3000:]
    streams = secured.run("streams", "--policy", str(policy), "--until-idle", "4", role="streams")
    assert streams.returncode == 0, streams.stdout[-3000:]
    execute = secured.run("execute", "--broker", "paper", "--until-idle", "4", role="execute")
    assert execute.returncode == 0, execute.stdout[-3000:] + execute.stderr[-3000:]
    sink = secured.run("sink", "--until-idle", "4", role="sink")
    assert sink.returncode == 0, sink.stdout[-3000:]
    # every table holds its topic's records (counted by the analyst, who may read every topic)
    dsn = secured.exports()["DATABASE_URL"]
    counts = _topic_counts(secured.kafka("analyst"))
    with psycopg.connect(dsn) as conn:
        rows = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in counts}  # type: ignore[index]  # noqa: S608
    assert rows == counts
    assert counts["market_trades"] > 1000
    assert counts["signals"] > 0
    assert counts["order_intents"] > 0
    assert counts["orders"] > 0
    # no generated secret in any log line, topic record or table row the run produced
    found = []
    secrets = secured.secrets()
    logs = [*secured.logs.glob("*.jsonl"), *secured.state.glob("*/service.log"), *secured.state.glob("*/*.log")]
    for path in logs:
        text = path.read_text(errors="replace")
        found += [f"{path.name}: {s[:4]}..." for s in secrets if s in text]
    for topic, payloads in _topic_bytes(secured.kafka("admin")).items():
        found += [f"topic {topic}: {s[:4]}..." for s in secrets if any(s.encode() in p for p in payloads)]
    with psycopg.connect(dsn) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for table in tables:
            dump = "\n".join(str(r[0]) for r in conn.execute(f"SELECT t::text FROM {table} t"))  # noqa: S608
            found += [f"table {table}: {s[:4]}..." for s in secrets if s in dump]
    assert found == []
    assert len(logs) >= 4


def _topic_counts(config: dict[str, Any]) -> dict[str, int]:
    """Distinct records per catalog topic (a record published twice, e.g. after a retry, is one row)."""
    return {topic: len(set(messages)) for topic, messages in _topic_bytes(config, [s.name for s in catalog()]).items()}


def _topic_bytes(config: dict[str, Any], topics: list[str] | None = None) -> dict[str, list[bytes]]:
    consumer = Consumer({**config, "group.id": "scalp-reader-secure-test", "enable.auto.commit": False})
    try:
        names = topics or [t for t in consumer.list_topics(timeout=20).topics if not t.startswith("__")]
        out: dict[str, list[bytes]] = {}
        for name in names:
            meta = consumer.list_topics(name, timeout=20).topics[name]
            out[name] = []
            for partition in meta.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=20)
                if high <= low:
                    continue
                consumer.assign([TopicPartition(name, partition, low)])
                while True:
                    msg = consumer.poll(10)
                    assert msg is not None, f"{name}[{partition}] stopped before {high}"
                    if msg.error() is None:
                        out[name].append((msg.value() or b"") + b"\n" + (msg.key() or b""))
                    if msg.offset() >= high - 1:
                        break
        return out
    finally:
        consumer.close()
