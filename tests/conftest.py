"""Service discovery for tests: environment variables first, else the local stack (started if needed).

Tests run against the real Kafka, Apicurio Registry and PostgreSQL. A service that cannot be reached
fails the run (in CI and locally alike): nothing is skipped.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Generator, Iterator

import psycopg
import pytest
from confluent_kafka.admin import AdminClient

from kafkaio.registry import SchemaRegistry
from kafkaio.settings import KafkaSettings
from scalp.settings import AppSettings, load_settings
from schemas.catalog import Catalog, catalog
from schemas.serde import AvroSerde
from tests.sharing import turn

# The tests' tapes are dated in November 2026 and Kafka deletes records by their (venue) timestamps: with the
# ticks' 7-day retention a tape older than that vanished minutes after it was written (seen in CI). Topics the
# tests create keep their records; subprocesses inherit this.
os.environ.setdefault("SCALP_MIN_RETENTION_MS", "-1")

_EXTERNAL = ("KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL", "DATABASE_URL")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    """Each test, fixtures included, runs under the shared-stack lock (tests/sharing.py): alone when marked
    ``exclusive``, else beside the other worker's tests."""
    with turn(exclusive=item.get_closest_marker("exclusive") is not None):
        return (yield)


@pytest.fixture(scope="session")
def app_settings() -> AppSettings:
    return load_settings()


@pytest.fixture(scope="session")
def local_stack(app_settings: AppSettings):  # type: ignore[no-untyped-def]
    """The local stack, started if it is not running (idempotent)."""
    from scalp.stack.manager import Stack

    stack = Stack(app_settings.stack)
    stack.up()
    return stack


@pytest.fixture(scope="session")
def services(app_settings: AppSettings, request: pytest.FixtureRequest) -> Iterator[AppSettings]:
    """Settings pointing at reachable services: those the environment names, else containers (testcontainers,
    when a Docker engine answers), else the local stack."""
    stack = contextlib.ExitStack()
    if not any(os.environ.get(name) for name in _EXTERNAL):
        from tests.containers import containers, docker_answers

        if docker_answers():
            env = stack.enter_context(containers())
            os.environ.update(env)  # subprocesses (scalp commands) inherit them
            app_settings = load_settings()
        else:
            request.getfixturevalue("local_stack")
    problems = []
    try:
        AdminClient({"bootstrap.servers": app_settings.kafka.bootstrap_servers}).list_topics(timeout=10)
    except Exception as exc:
        problems.append(f"Kafka at {app_settings.kafka.bootstrap_servers}: {exc}")
    try:
        SchemaRegistry(app_settings.registry).subjects()
    except Exception as exc:
        problems.append(f"registry at {app_settings.registry.url}: {exc}")
    try:
        with psycopg.connect(app_settings.database.dsn, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        problems.append(f"PostgreSQL at {app_settings.database.safe_url}: {type(exc).__name__}")
    if problems:
        stack.close()
        pytest.fail("services unreachable (run `scalp stack up` or ./run test):\n" + "\n".join(problems))
    with stack:
        yield app_settings


@pytest.fixture(scope="session")
def cat() -> Catalog:
    return catalog()


@pytest.fixture(scope="session")
def test_kafka(services: AppSettings, cat: Catalog) -> Iterator[KafkaSettings]:
    """Kafka settings with a per-session topic prefix; the topics are created and deleted around the run."""
    from kafkaio.admin import TopicAdmin

    prefix = f"t{uuid.uuid4().hex[:8]}_"
    kafka = services.kafka.model_copy(update={"topic_prefix": prefix})
    admin = TopicAdmin(kafka, cat)
    admin.create_all(with_dlq=False)
    yield kafka
    names = [kafka.topic(name) for name in cat.names()]
    for future in admin.admin.delete_topics(names, operation_timeout=30).values():
        future.result()


@pytest.fixture(scope="session")
def registry(services: AppSettings) -> SchemaRegistry:
    return SchemaRegistry(services.registry)


@pytest.fixture(scope="session")
def serde(registry: SchemaRegistry, test_kafka: KafkaSettings, cat: Catalog) -> AvroSerde:
    return AvroSerde(registry, test_kafka, cat)


# Storage tests (migrations, the sink and its faults, maintenance) run on both flavours: TimescaleDB and
# plain PostgreSQL with pg_partman. The rest runs on the server's own flavour (TimescaleDB in the stack).
BOTH_FLAVOURS = {"test_sink", "test_sink_faults", "test_maintain"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if "fresh_db" in metafunc.fixturenames and module in BOTH_FLAVOURS:
        metafunc.parametrize("db_flavour", ["timescale", "plain"], indirect=True)


@pytest.fixture
def db_flavour(request: pytest.FixtureRequest) -> str | None:
    """The flavour a test's fresh database is pinned to (None: the server's); a module may set DB_FLAVOUR."""
    return getattr(request, "param", None) or getattr(request.module, "DB_FLAVOUR", None)


@pytest.fixture
def fresh_db(services: AppSettings, db_flavour: str | None) -> Iterator[str]:
    """A new, empty database in the same server, pinned to ``db_flavour`` (``scalp.flavour``, which the
    migrations read); dropped afterwards. Yields its DSN. TimescaleDB that the server lacks fails the test."""
    from urllib.parse import urlsplit, urlunsplit

    name = f"scalp_test_{uuid.uuid4().hex[:10]}"
    dsn = services.database.dsn
    with psycopg.connect(dsn, autocommit=True) as conn:
        if db_flavour == "timescale":
            row = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()
            if not row or "timescaledb" not in str(row[0]):
                pytest.fail("the server does not preload TimescaleDB: run ./run setup (it builds TimescaleDB)")
        conn.execute(f'CREATE DATABASE "{name}"')
        if db_flavour:
            conn.execute(f"ALTER DATABASE \"{name}\" SET scalp.flavour = '{db_flavour}'")
    parts = urlsplit(dsn)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def prefix(services: AppSettings) -> Iterator[str]:
    """A unique topic prefix for one test; every topic created under it is deleted afterwards."""
    from kafkaio.admin import TopicAdmin

    value = f"t{uuid.uuid4().hex[:8]}_"
    yield value
    TopicAdmin(services.kafka, catalog()).delete_prefixed(value)
