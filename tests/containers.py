"""The services from testcontainers, on machines with a Docker engine.

Service discovery for the tests (tests/conftest.py) takes, in this order: the services the environment names
(KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL, DATABASE_URL); containers started here when `docker info`
answers; else the local stack. Written against testcontainers 4.x (``testcontainers.community.*`` and the
core ``DockerContainer`` with wait strategies). The machine this project is developed and tested on has no
Docker engine, so this path is only imported there (a unit test checks that the names it uses exist in the
pinned library), never run.

Images: Confluent's build of Apache Kafka (``cp-kafka``, KRaft: what ``KafkaContainer`` drives), Apicurio
Registry 3.0.9 (in-memory storage), and TimescaleDB 2.28.3 on PostgreSQL 15, the version the local stack
builds. That image has no pg_partman, so the storage tests of the plain flavour need DATABASE_URL pointing at
a server that has it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

KAFKA_IMAGE = "confluentinc/cp-kafka:7.9.0"
REGISTRY_IMAGE = "apicurio/apicurio-registry:3.0.9"
DATABASE_IMAGE = "timescale/timescaledb:2.28.3-pg15"


def docker_answers() -> bool:
    """Whether a Docker engine answers (``docker info``)."""
    try:
        import docker

        docker.from_env(timeout=5).ping()
    except Exception:  # no engine, no socket, no permission: the local stack is used instead
        return False
    return True


@contextlib.contextmanager
def containers() -> Iterator[dict[str, str]]:
    """Start Kafka, the registry and TimescaleDB; yields the environment that points the tests at them."""
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import HttpWaitStrategy

    kafka = KafkaContainer(KAFKA_IMAGE).with_kraft()
    registry = (
        DockerContainer(REGISTRY_IMAGE)
        .with_exposed_ports(8080)
        .waiting_for(HttpWaitStrategy(8080, "/apis/ccompat/v7/subjects"))
    )
    database = PostgresContainer(DATABASE_IMAGE, username="scalp", password="scalp", dbname="scalp", driver=None)
    with kafka, registry, database:
        host = registry.get_container_host_ip()
        yield {
            "KAFKA_BOOTSTRAP_SERVERS": kafka.get_bootstrap_server(),
            "SCHEMA_REGISTRY_URL": f"http://{host}:{registry.get_exposed_port(8080)}/apis/ccompat/v7",
            "DATABASE_URL": database.get_connection_url(),
        }
