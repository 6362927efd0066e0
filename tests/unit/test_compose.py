"""docker-compose.yml cannot be started here (no Docker engine); its structure is checked instead."""

from __future__ import annotations

import tomllib
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


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    """Validated with check-jsonschema's vendored Compose specification schema (pinned by the lock)."""
    import subprocess
    import sys

    checker = Path(sys.executable).with_name("check-jsonschema")
    proc = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(REPO / "docker-compose.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    broken = REPO / "docker-compose.yml"
    bad = yaml.safe_load(broken.read_text())
    bad["services"]["sink"]["restart"] = ["always"]  # not a string: the schema refuses it
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as tmp:
        yaml.safe_dump(bad, tmp)
    proc = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", tmp.name], capture_output=True, text=True, check=False
    )
    assert proc.returncode != 0  # the validator does refuse an invalid file


def test_every_image_is_pinned_and_every_long_running_service_has_a_health_check() -> None:
    services = load()["services"]
    for name, service in services.items():
        image = service["image"]
        tag = image.rsplit(":", 1)[1] if ":" in image else ""
        assert (tag and tag != "latest" and any(c.isdigit() for c in tag)) or image == "scalp-pipeline:local", name
    for name in ("kafka", "timescaledb", "registry", "kafka-ui", "sink", "streams", "ingest", "execute"):
        assert "healthcheck" in services[name], name
    assert env_of(services["kafka-ui"])["KAFKA_CLUSTERS_0_READONLY"] == "true"


def test_each_service_gets_only_its_own_secrets_and_optional_services_have_profiles() -> None:
    services = load()["services"]
    holders = {
        secret: sorted(n for n, s in services.items() if secret in env_of(s))
        for secret in ("POLYGON_API_KEY", "TRADIER_TOKEN", "TRADIER_ACCOUNT_ID")
    }
    assert holders == {"POLYGON_API_KEY": ["ingest"], "TRADIER_TOKEN": ["execute"], "TRADIER_ACCOUNT_ID": ["execute"]}
    assert services["ingest"]["profiles"] == ["ingest"]
    assert services["execute"]["profiles"] == ["execute"]
    for name in ("sink", "streams", "ingest", "execute"):
        assert services[name]["restart"] == "on-failure", name  # exit 2 is turned into a stop by service.sh
        assert "SCALP_LOG_DIR" not in env_of(services[name])  # logs to stdout, per service


def test_the_service_wrapper_stops_on_usage_errors_and_passes_signals(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import time

    fake = tmp_path / "scalp"
    fake.write_text(
        "#!/bin/sh\n"
        "if [ \"$1\" = wait ]; then trap 'echo got-term; exit 0' TERM; while :; do sleep 0.1; done; fi\n"
        'exit "$1"\n'
    )
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    wrapper = str(REPO / "infra" / "docker" / "service.sh")
    codes = {
        c: subprocess.run(["sh", wrapper, str(c)], env=env, capture_output=True, check=False) for c in (0, 1, 2, 3)
    }
    assert {c: p.returncode for c, p in codes.items()} == {0: 0, 1: 1, 2: 0, 3: 3}
    assert b"usage or configuration error (exit 2); not restarted" in codes[2].stderr
    proc = subprocess.Popen(["sh", wrapper, "wait"], env=env, stdout=subprocess.PIPE)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert b"got-term" in out  # scalp itself received the SIGTERM


def test_the_image_is_multi_stage_non_root_pinned_and_installs_the_lock() -> None:
    text = (REPO / "infra" / "docker" / "Dockerfile").read_text()
    assert text.count("\nFROM ") + text.startswith("FROM ") >= 2  # multi-stage
    base = next(line for line in text.splitlines() if line.startswith("ARG PYTHON_IMAGE="))
    assert base.split("=", 1)[1].count(".") >= 2  # python:3.11.N-...: a patch release, not a floating tag
    assert "--require-hashes -r requirements.lock" in text
    assert "ARG SCALP_SOURCE_COMMIT" in text
    user = [line for line in text.splitlines() if line.startswith("USER ")]
    assert user
    assert user[-1] != "USER root"
    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line[:1] not in ("#", "")]
    assert {".venv", ".scalp", ".git", "tests"} <= set(ignored)
    for package in ("kafkaio", "execution", "scalp", "config", "streams", "sinks", "connectors", "schemas"):
        assert f"COPY {package} ./{package}" in text, package
    # the compiled build (the wheel tests/integration/conftest.py builds the same way): its build inputs, a C
    # compiler in the build stage only, and a check that the runtime image loads the compiled modules
    build, runtime = text.split("\nFROM ", 2)[1:]
    assert "SCALP_COMPILE=1 /opt/scalp/bin/pip wheel --no-deps -w /dist ." in build
    assert "gcc" in build
    assert "gcc" not in runtime
    assert "COPY pyproject.toml setup.py README.md ./" in build
    assert "COPY infra/packaging ./infra/packaging" in build
    assert 'RUN scalp --version | grep -q "(compiled with mypyc: "' in runtime
    backend = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]
    assert backend["backend-path"] == ["infra/packaging"]
    assert not {"infra", "infra/packaging", "setup.py"} & set(ignored)


def test_the_testcontainers_path_uses_names_the_pinned_library_has() -> None:
    """It cannot run here (no Docker engine): the classes, methods and wait strategy it calls must exist."""
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import HttpWaitStrategy

    from tests.containers import DATABASE_IMAGE, containers, docker_answers

    assert callable(containers)
    assert isinstance(docker_answers(), bool)  # never raises, engine or not
    for cls, names in (
        (KafkaContainer, ("with_kraft", "get_bootstrap_server")),
        (DockerContainer, ("with_exposed_ports", "waiting_for", "get_container_host_ip", "get_exposed_port")),
        (PostgresContainer, ("get_connection_url",)),
    ):
        for name in names:
            assert hasattr(cls, name), f"{cls.__name__}.{name}"
    assert HttpWaitStrategy(8080, "/apis/ccompat/v7/subjects") is not None
    assert load()["services"]["timescaledb"]["image"] == DATABASE_IMAGE  # the containers run what compose runs
