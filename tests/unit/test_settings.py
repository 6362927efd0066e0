from __future__ import annotations

from pathlib import Path

import pytest

from kafkaio.errors import ConfigError
from scalp.settings import ENV_OVERRIDES, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def test_defaults_are_the_local_stack(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, ""), env={})
    assert s.kafka.bootstrap_servers == "127.0.0.1:19092"
    assert s.registry.url == "http://127.0.0.1:18081/apis/ccompat/v7"
    assert s.database.dsn == "postgresql://scalp@127.0.0.1:15432/scalp"
    assert s.kafka.topic_prefix == ""
    assert s.polygon.ws_url == "wss://socket.massive.com/stocks"
    assert s.polygon.rest_url == "https://api.massive.com"
    # Tradier: the sandbox unless --live; production only with it
    sandbox = s.tradier.for_run(live=False)
    assert sandbox.base_url == "https://sandbox.tradier.com/v1"
    assert sandbox.stream_url == "wss://sandbox-ws.tradier.com/v1/accounts/events"
    assert not sandbox.live
    production = s.tradier.for_run(live=True)
    assert production.base_url == "https://api.tradier.com/v1"
    assert production.stream_url == "wss://ws.tradier.com/v1/accounts/events"
    assert production.live


def test_the_production_tradier_url_needs_live(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, ""), env={"TRADIER_BASE_URL": "https://api.tradier.com/v1"})
    with pytest.raises(ConfigError, match="TRADIER_BASE_URL is Tradier's production API"):
        s.tradier.for_run(live=False)
    assert s.tradier.for_run(live=True).base_url == "https://api.tradier.com/v1"
    s = load_settings(write(tmp_path, ""), env={"TRADIER_STREAM_URL": "wss://ws.tradier.com/v1/accounts/events"})
    with pytest.raises(ConfigError, match="TRADIER_STREAM_URL"):
        s.tradier.for_run(live=False)
    local = load_settings(write(tmp_path, ""), env={"TRADIER_BASE_URL": "http://127.0.0.1:8/v1"}).tradier
    assert local.for_run(live=False).base_url == "http://127.0.0.1:8/v1"  # a local server is used as is


def test_every_contract_env_name_overrides(tmp_path: Path) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "k:1",
        "SCHEMA_REGISTRY_URL": "http://r:2/apis/ccompat/v7",
        "DATABASE_URL": "postgresql://u:pw@d:3/x",
        "SCALP_TOPIC_PREFIX": "dev_",
        "POLYGON_API_KEY": "pk",
        "POLYGON_WS_URL": "ws://127.0.0.1:9/stocks",
        "POLYGON_REST_URL": "http://127.0.0.1:9",
        "TRADIER_TOKEN": "tt",
        "TRADIER_ACCOUNT_ID": "VA1",
        "TRADIER_BASE_URL": "http://127.0.0.1:8/v1",
        "TRADIER_STREAM_URL": "ws://127.0.0.1:8/v1/accounts/events",
        "SCALP_LOG_DIR": str(tmp_path / "logs"),
        "SCALP_STATE_DIR": str(tmp_path / "state"),
        "SCALP_ALLOW_PLAINTEXT": "true",  # k, r and d are other machines reached over plain schemes
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "PLAIN",
        "KAFKA_SASL_USERNAME": "ingest",
        "KAFKA_SASL_PASSWORD": "kafka-pw",
        "KAFKA_SSL_CA_LOCATION": str(tmp_path / "ca.pem"),
        "KAFKA_SSL_CERTIFICATE_LOCATION": str(tmp_path / "c.pem"),
        "KAFKA_SSL_KEY_LOCATION": str(tmp_path / "k.pem"),
        "KAFKA_SSL_KEY_PASSWORD": "key-pw",
        "KAFKA_REPLICATION_FACTOR": "3",
        "KAFKA_MIN_INSYNC_REPLICAS": "2",
        "SCHEMA_REGISTRY_BASIC_AUTH_USER": "reg",
        "SCHEMA_REGISTRY_BASIC_AUTH_PASSWORD": "reg-pw",
        "SCHEMA_REGISTRY_CA_LOCATION": str(tmp_path / "reg-ca.pem"),
    }
    s = load_settings(write(tmp_path, ""), env=env)
    assert s.security.allow_plaintext is True
    assert (s.kafka.security_protocol, s.kafka.sasl_mechanism, s.kafka.sasl_username) == (
        "SASL_PLAINTEXT",
        "PLAIN",
        "ingest",
    )
    assert s.kafka.sasl_password is not None
    assert s.kafka.sasl_password.get_secret_value() == "kafka-pw"
    assert s.kafka.ssl_ca_location == tmp_path / "ca.pem"
    assert (s.kafka.ssl_certificate_location, s.kafka.ssl_key_location) == (tmp_path / "c.pem", tmp_path / "k.pem")
    assert s.kafka.ssl_key_password is not None
    assert s.kafka.ssl_key_password.get_secret_value() == "key-pw"
    assert (s.kafka.replication_factor, s.kafka.min_insync_replicas) == (3, 2)
    assert s.registry.basic_auth_user == "reg"
    assert s.registry.basic_auth_password is not None
    assert s.registry.basic_auth_password.get_secret_value() == "reg-pw"
    assert s.registry.ssl_ca_location == tmp_path / "reg-ca.pem"
    assert s.kafka.bootstrap_servers == "k:1"
    assert s.kafka.topic("market_trades") == "dev_market_trades"
    assert s.registry.url == "http://r:2/apis/ccompat/v7"
    assert s.database.dsn == "postgresql://u:pw@d:3/x"
    assert s.database.safe_url == "postgresql://u:***@d:3/x"
    assert s.polygon.api_key is not None
    assert s.polygon.api_key.get_secret_value() == "pk"
    assert s.polygon.ws_url == "ws://127.0.0.1:9/stocks"
    assert s.polygon.rest_url == "http://127.0.0.1:9"
    assert s.tradier.token is not None
    assert s.tradier.token.get_secret_value() == "tt"
    assert s.tradier.account_id == "VA1"
    assert s.tradier.base_url == "http://127.0.0.1:8/v1"
    assert s.tradier.stream_url == "ws://127.0.0.1:8/v1/accounts/events"
    assert s.logging.dir == tmp_path / "logs"
    assert s.stack.state_dir == tmp_path / "state"
    assert set(env) <= set(ENV_OVERRIDES)


def test_massive_api_key_is_an_alias_and_polygon_wins(tmp_path: Path) -> None:
    alias_only = load_settings(write(tmp_path, ""), env={"MASSIVE_API_KEY": "m"})
    assert alias_only.polygon.api_key is not None
    assert alias_only.polygon.api_key.get_secret_value() == "m"
    both = load_settings(write(tmp_path, ""), env={"MASSIVE_API_KEY": "m", "POLYGON_API_KEY": "p"})
    assert both.polygon.api_key is not None
    assert both.polygon.api_key.get_secret_value() == "p"


def test_secrets_never_show_in_repr_or_digest(tmp_path: Path) -> None:
    s = load_settings(
        write(tmp_path, ""),
        env={
            "POLYGON_API_KEY": "sekrit-key",
            "TRADIER_TOKEN": "sekrit-tok",
            "DATABASE_URL": "postgresql://u:sekrit-pw@127.0.0.1/db",
        },
    )
    assert "sekrit" not in repr(s)
    assert "sekrit" not in s.model_dump_json()
    other = load_settings(
        write(tmp_path, ""),
        env={"POLYGON_API_KEY": "other", "TRADIER_TOKEN": "x", "DATABASE_URL": "postgresql://u:other@127.0.0.1/db"},
    )
    assert s.digest() == other.digest()  # digest covers non-secret settings only


def test_unknown_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'kafka\.bootstrap_serverz'"):
        load_settings(write(tmp_path, "kafka:\n  bootstrap_serverz: x\n"), env={})


def test_unknown_section_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'kafak'"):
        load_settings(write(tmp_path, "kafak: {}\n"), env={})


def test_wrong_type_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"key 'stack\.kafka_port'"):
        load_settings(write(tmp_path, "stack:\n  kafka_port: lots\n"), env={})


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(write(tmp_path, "kafka: [unclosed\n"), env={})
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml", env={})


def test_shipped_config_loads() -> None:
    s = load_settings(env={})
    assert s.registry.compatibility == "BACKWARD"


def test_streams_gc_thresholds_are_three_positive_integers(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, "streams:\n  gc_thresholds: [4000, 20, 500]\n"), env={})
    assert s.streams.gc_thresholds == (4000, 20, 500)
    assert load_settings(write(tmp_path, ""), env={}).streams.gc_thresholds == (5000, 50, 1000)
    with pytest.raises(ConfigError, match=r"streams\.gc_thresholds\.0"):
        load_settings(write(tmp_path, "streams:\n  gc_thresholds: [0, 20, 500]\n"), env={})
    with pytest.raises(ConfigError, match=r"streams\.gc_thresholds"):
        load_settings(write(tmp_path, "streams:\n  gc_thresholds: [4000, 20]\n"), env={})


def test_ingest_tunes_the_collector_from_its_settings(tmp_path: Path) -> None:
    import gc

    from pydantic import SecretStr

    from connectors.polygon.ingest import IngestPipeline
    from connectors.polygon.settings import PolygonSettings

    settings = load_settings(write(tmp_path, "polygon:\n  gc_thresholds: [6000, 30, 900]\n"), env={})
    assert load_settings(write(tmp_path, ""), env={}).polygon.gc_thresholds == (5000, 50, 1000)
    polygon = PolygonSettings(**{**settings.polygon.model_dump(), "api_key": SecretStr("k")})
    pipeline = IngestPipeline(polygon, ["SPY"], producer=None)  # type: ignore[arg-type]
    before = gc.get_threshold()
    try:
        pipeline.tune_gc()
        assert gc.get_threshold() == (6000, 30, 900)
        assert gc.get_freeze_count() > 0
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
