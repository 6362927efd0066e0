"""docker-compose.yml cannot be started here (no Docker engine); its structure is checked instead."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def load() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def env_of(service: dict) -> dict[str, str]:  # type: ignore[type-arg]
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_required_services_and_images() -> None:
    services = load()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["registry"]["image"].startswith("apicurio/apicurio-registry:")
    assert services["kafka-ui"]["image"].startswith("kafbat/kafka-ui")
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb:")
    for name in ("migrate", "sink", "streams"):
        assert name in services


def test_kafka_is_single_node_kraft_on_the_stack_port() -> None:
    kafka = load()["services"]["kafka"]
    env = env_of(kafka)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "19092" in env["KAFKA_ADVERTISED_LISTENERS"] or "9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert any("19092" in str(p) for p in kafka["ports"])


def test_kafka_ui_decodes_avro_through_the_registry_ccompat_url() -> None:
    env = env_of(load()["services"]["kafka-ui"])
    assert env["KAFKA_CLUSTERS_0_SCHEMAREGISTRY"].endswith("/apis/ccompat/v7")
    assert env["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"].startswith("kafka:")


def test_registry_storage_is_persistent() -> None:
    env = env_of(load()["services"]["registry"])
    assert env["APICURIO_STORAGE_KIND"] == "sql"
    assert env["APICURIO_STORAGE_SQL_KIND"] == "postgresql"


def test_pipeline_services_use_the_contract_env_names() -> None:
    services = load()["services"]
    for name in ("migrate", "sink", "streams"):
        env = env_of(services[name])
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert env["SCHEMA_REGISTRY_URL"].endswith("/apis/ccompat/v7")
        assert env["DATABASE_URL"].startswith("postgresql://")


def test_ports_match_the_local_stack() -> None:
    services = load()["services"]
    assert any("18081" in str(p) for p in services["registry"]["ports"])
    assert any("15432" in str(p) for p in services["timescaledb"]["ports"])


def test_the_timescaledb_image_is_pinned_to_the_version_the_tests_build() -> None:
    from scalp.stack.settings import StackSettings

    stack = StackSettings()
    image = load()["services"]["timescaledb"]["image"]
    assert image == f"timescale/timescaledb:{stack.timescaledb_version}-pg{stack.postgres_major}"
