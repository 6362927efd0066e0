"""Security settings reach every client from the one Kafka layer; plain schemes to other machines are
refused unless allowed; secrets are masked in every form they can take."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from kafkaio import clients
from kafkaio.errors import ConfigError
from kafkaio.redact import redact_text, redact_url
from kafkaio.settings import KafkaSettings, RegistrySettings
from scalp.settings import load_settings
from tests.cli_util import scalp


def test_sasl_ssl_reaches_librdkafka_faust_and_the_admin_client(tmp_path: Path) -> None:
    import ssl

    import faust

    ca = tmp_path / "ca.pem"
    _self_signed(ca)
    kafka = KafkaSettings(
        bootstrap_servers="b1:9093,b2:9093",
        security_protocol="SASL_SSL",
        sasl_username="streams",
        sasl_password="s3cret-pw",  # type: ignore[arg-type]
        ssl_ca_location=ca,
        properties={"socket.keepalive.enable": "true"},
        replication_factor=3,
        min_insync_replicas=2,
    )
    config = kafka.client_config()
    assert config["security.protocol"] == "SASL_SSL"
    assert (config["sasl.mechanism"], config["sasl.username"], config["sasl.password"]) == (
        "SCRAM-SHA-512",
        "streams",
        "s3cret-pw",
    )
    assert config["ssl.ca.location"] == str(ca)
    assert config["ssl.endpoint.identification.algorithm"] == "https"
    assert config["socket.keepalive.enable"] == "true"
    assert clients.consumer_config(kafka, "g")["sasl.username"] == "streams"
    assert clients.producer_config(kafka)["security.protocol"] == "SASL_SSL"
    options = clients.faust_options(kafka)
    assert options["broker"] == "kafka://b1:9093;kafka://b2:9093"
    assert options["topic_replication_factor"] == 3
    credentials = options["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password, credentials.mechanism.value) == (
        "streams",
        "s3cret-pw",
        "SCRAM-SHA-512",
    )
    assert credentials.protocol.value == "SASL_SSL"
    assert isinstance(credentials.ssl_context, ssl.SSLContext)
    assert credentials.ssl_context.check_hostname is True
    assert kafka.topic_configs() == {"min.insync.replicas": "2"}
    assert "s3cret-pw" not in repr(kafka)


def test_bad_security_combinations_are_refused_naming_them(tmp_path: Path) -> None:
    cases = {
        "kafka:\n  security_protocol: SASL_SSL\n": "needs sasl_username and sasl_password",
        "kafka:\n  security_protocol: SSL\n  ssl_certificate_location: /c.pem\n": "go together",
        "kafka:\n  min_insync_replicas: 2\n": "above replication_factor",
        "kafka:\n  security_protocol: TLS\n": "kafka.security_protocol",
        "registry:\n  basic_auth_user: u\n": "basic_auth_user and basic_auth_password go together",
    }
    for body, expected in cases.items():
        config = tmp_path / "c.yaml"
        config.write_text(body)
        with pytest.raises(ConfigError, match=expected):
            load_settings(config, env={})


def test_the_registry_client_gets_basic_auth_and_the_ca(tmp_path: Path) -> None:
    registry = RegistrySettings(
        url="https://reg.example:8443/apis/ccompat/v7",
        basic_auth_user="sink",
        basic_auth_password="reg-pw",  # type: ignore[arg-type]
        ssl_ca_location=tmp_path / "ca.pem",
    )
    config = clients.registry_client(registry)
    assert config["basic.auth.user.info"] == "sink:reg-pw"
    assert config["ssl.ca.location"] == str(tmp_path / "ca.pem")


def test_kafka_prop_variables_pass_any_librdkafka_property_through() -> None:
    s = load_settings(env={"KAFKA_PROP_SOCKET_KEEPALIVE_ENABLE": "true", "KAFKA_PROP_QUEUED_MIN_MESSAGES": "5"})
    assert s.kafka.properties == {"socket.keepalive.enable": "true", "queued.min.messages": "5"}
    assert s.kafka.client_config()["queued.min.messages"] == "5"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KAFKA_BOOTSTRAP_SERVERS": "broker.internal:9092"}, "kafka.bootstrap_servers: broker.internal"),
        ({"SCHEMA_REGISTRY_URL": "http://10.0.0.5:8080/apis/ccompat/v7"}, "registry.url: 10.0.0.5"),
        ({"POLYGON_WS_URL": "ws://feed.example/stocks"}, "polygon.ws_url: feed.example"),
        ({"POLYGON_REST_URL": "http://feed.example"}, "polygon.rest_url"),
        ({"TRADIER_BASE_URL": "http://broker.example/v1"}, "tradier.base_url"),
        ({"TRADIER_STREAM_URL": "ws://broker.example/v1/accounts/events"}, "tradier.stream_url"),
        ({"DATABASE_URL": "postgresql://u@db.example/scalp"}, "database.url: db.example"),
        ({"DATABASE_URL": "host=db.example dbname=scalp sslmode=prefer"}, "database.url: db.example"),
    ],
)
def test_a_plain_scheme_to_another_machine_is_refused_unless_allowed(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(env=env)
    load_settings(env={**env, "SCALP_ALLOW_PLAINTEXT": "true"})  # explicitly allowed


def test_loopback_and_encrypted_connections_need_no_allowance() -> None:
    load_settings(env={})  # the local stack
    load_settings(
        env={
            "KAFKA_BOOTSTRAP_SERVERS": "broker.example:9093",
            "KAFKA_SECURITY_PROTOCOL": "SSL",
            "SCHEMA_REGISTRY_URL": "https://reg.example/apis/ccompat/v7",
            "DATABASE_URL": "postgresql://u@db.example/scalp?sslmode=verify-full",
            "POLYGON_WS_URL": "ws://localhost:9/stocks",
            "TRADIER_BASE_URL": "http://[::1]:8/v1",
        }
    )


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://scalp:hunter2-pw@db:5432/scalp",
        "postgresql://db:5432/scalp?user=scalp&password=hunter2-pw&sslmode=require",
        "host=db user=scalp password=hunter2-pw dbname=scalp",
        "host=db user=scalp password='hunter2-pw with spaces' dbname=scalp",
        "https://sink:hunter2-pw@reg.example/apis/ccompat/v7",
        "{'sasl.password': 'hunter2-pw', 'bootstrap.servers': 'b:9093'}",
        "Authorization: Bearer hunter2-pw",
        "https://api.massive.com/v3/trades/SPY?apiKey=hunter2-pw&limit=50000",
    ],
)
def test_every_credential_form_is_masked(text: str) -> None:
    masked = redact_text(text)
    assert "hunter2" not in masked, masked
    assert "***" in masked


def test_redact_url_keeps_what_is_not_secret() -> None:
    assert redact_url("postgresql://scalp@127.0.0.1:15432/scalp") == "postgresql://scalp@127.0.0.1:15432/scalp"
    assert redact_url("postgresql://scalp:pw@h:1/x?sslmode=require") == "postgresql://scalp:***@h:1/x?sslmode=require"


def test_exception_text_and_tracebacks_in_logs_are_masked(tmp_path: Path) -> None:
    from scalp.logs import setup_logging

    stream = io.StringIO()
    setup_logging("INFO", None, secrets=["tok-abcdef-123"], stream=stream, service="test")
    log = logging.getLogger("test.mask")
    try:
        raise RuntimeError("connect to postgresql://u:db-pass-999@h/x failed; token tok-abcdef-123")
    except RuntimeError:
        log.exception("failed with password=plain-777")
    line = json.loads(stream.getvalue().splitlines()[-1])
    text = json.dumps(line)
    for secret in ("db-pass-999", "tok-abcdef-123", "plain-777"):
        assert secret not in text
    assert "RuntimeError" in line["exc_info"]  # the traceback is kept, masked


def test_cli_errors_are_masked() -> None:
    proc = scalp("db", "migrate", env={"DATABASE_URL": "postgresql://scalp:cli-pass-4242@127.0.0.1:1/none"})
    assert proc.returncode == 1
    assert "cli-pass-4242" not in proc.stderr + proc.stdout


def _self_signed(path: Path) -> None:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
