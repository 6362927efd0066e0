"""Application settings: config/pipeline.yaml, overridden by environment variables.

Each package owns the settings class of its components; this module only loads the file and the
environment into them. Unknown keys and wrong types raise ConfigError naming the key.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import yaml
from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from scalp_config import packaged

from connectors.polygon.settings import PolygonSettings
from connectors.tradier.settings import TradierSettings
from execution.settings import ExecutionSettings
from kafkaio.errors import ConfigError
from kafkaio.settings import KafkaSettings, RegistrySettings
from sinks.settings import DatabaseSettings, SinkSettings
from streams.settings import StreamsSettings

from .stack.settings import StackSettings

DEFAULT_CONFIG = packaged("pipeline.yaml")  # packaged with scalp (scalp_config)


class LogSettings(BaseModel):
    """JSON event logs: stdout, and a rotated file per service (``<dir>/<service>.jsonl``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dir: Path | None = None  # None: <stack.state_dir>/logs
    file: bool = True  # false: stdout only (e.g. in containers, where the runtime collects stdout)
    level: str = "INFO"
    file_name: str | None = None  # one file for every service instead of <service>.jsonl
    max_mb: int = Field(default=50, gt=0)  # rotate at this size
    backups: int = Field(default=5, ge=0)  # rotated files kept


class SecuritySettings(BaseModel):
    """Guards on where credentials and data may travel."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # a host that is not this machine reached over a plain scheme (http, ws, Kafka PLAINTEXT or
    # SASL_PLAINTEXT, PostgreSQL without sslmode=require) is refused unless this is true (a private network
    # you trust, e.g. the docker-compose network)
    allow_plaintext: bool = False


class AppSettings(BaseModel):
    """Everything the shell hands to components."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    polygon: PolygonSettings = Field(default_factory=PolygonSettings)
    tradier: TradierSettings = Field(default_factory=TradierSettings)
    sink: SinkSettings = Field(default_factory=SinkSettings)
    streams: StreamsSettings = Field(default_factory=StreamsSettings)
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)
    logging: LogSettings = Field(default_factory=LogSettings)
    stack: StackSettings = Field(default_factory=StackSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)

    @model_validator(mode="after")
    def _no_plaintext_off_this_machine(self) -> AppSettings:
        if not self.security.allow_plaintext:
            problem = plaintext_problem(self)
            if problem:
                raise ValueError(f"{problem}; use TLS, or set SCALP_ALLOW_PLAINTEXT=true on a network you trust")
        return self

    def digest(self) -> str:
        """sha256 over the non-secret settings that shape outputs (secrets appear only as set / unset).

        Where things live and how they are reached is left out (:data:`WHERE`): brokers, topic prefix, registry,
        database URLs, consumer groups, ports and addresses, the local stack's section, logging, and the
        policy file's path (its content is the session policy digest). The trade-condition table counts by its
        content, not its path. So every worker of a deployment, the same configuration run from the checkout
        or the installed package in any directory, and the same session through other topics all stamp the
        same env hash."""
        return hashlib.sha256(self.snapshot().encode()).hexdigest()

    def snapshot(self) -> str:
        """The canonical JSON whose sha256 is :meth:`digest` (a ``settings`` config snapshot); secrets appear
        as masks, the trade-condition table as the sha256 of its content."""
        kept = self.model_dump(mode="json", exclude=WHERE)
        kept["streams"]["conditions_file"] = _content_digest(self.streams.conditions_file)
        return json.dumps(kept, sort_keys=True, default=str)


# what AppSettings.digest leaves out: where things live and how they are reached
WHERE: dict[str, Any] = {
    "stack": True,
    "logging": True,
    "security": True,
    "kafka": True,
    "registry": True,
    "database": True,
    "polygon": {"ws_url", "rest_url", "http_port", "http_host"},
    "tradier": {"base_url", "stream_url"},
    "sink": {"group_id", "instance_id", "http_port", "http_host"},
    "streams": {"app_id", "policy_file", "web_port", "http_port", "http_host"},
    "execution": {"audit_spill_file", "http_port", "http_host"},
}


def _loopback(host: str | None) -> bool:
    if not host or host.startswith("/") or host == "localhost":  # no host or a unix socket: this machine
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def plaintext_problem(settings: AppSettings) -> str | None:
    """The first connection to another machine over a plain scheme, named; None when there is none."""
    kafka = settings.kafka
    if kafka.security_protocol in ("PLAINTEXT", "SASL_PLAINTEXT"):
        for server in kafka.bootstrap_servers.split(","):
            host = server.strip().rsplit(":", 1)[0]
            if not _loopback(host):
                return f"kafka.bootstrap_servers: {host} is reached over {kafka.security_protocol}"
    urls = [("registry.url", settings.registry.url, "http")]
    urls += [("polygon.ws_url", settings.polygon.ws_url, "ws"), ("polygon.rest_url", settings.polygon.rest_url, "http")]
    urls += [("tradier.base_url", settings.tradier.base_url, "http")]
    urls += [("tradier.stream_url", settings.tradier.stream_url, "ws")]
    for name, url, plain in urls:
        parts = urlsplit(url) if url else None
        if parts is not None and parts.scheme == plain and not _loopback(parts.hostname):
            return f"{name}: {parts.hostname} is reached over {plain}://"
    for url in settings.database.urls():
        try:
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError:
            continue  # reported when connecting
        hosts = str(params.get("host") or "").split(",")
        if not all(_loopback(h) for h in hosts) and params.get("sslmode") not in (
            "require",
            "verify-ca",
            "verify-full",
        ):
            return f"database.url: {','.join(hosts)} is reached without sslmode=require (or verify-ca, verify-full)"
    return None


def _content_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return f"unreadable: {path.name}"  # reading it for real reports the error


# Environment variable -> (section, key). Names are a contract (the README lists them).
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
    "SCALP_TOPIC_PREFIX": ("kafka", "topic_prefix"),
    "SCALP_MIN_RETENTION_MS": ("kafka", "min_retention_ms"),
    "KAFKA_SECURITY_PROTOCOL": ("kafka", "security_protocol"),
    "KAFKA_SASL_MECHANISM": ("kafka", "sasl_mechanism"),
    "KAFKA_SASL_USERNAME": ("kafka", "sasl_username"),
    "KAFKA_SASL_PASSWORD": ("kafka", "sasl_password"),
    "KAFKA_SSL_CA_LOCATION": ("kafka", "ssl_ca_location"),
    "KAFKA_SSL_CERTIFICATE_LOCATION": ("kafka", "ssl_certificate_location"),
    "KAFKA_SSL_KEY_LOCATION": ("kafka", "ssl_key_location"),
    "KAFKA_SSL_KEY_PASSWORD": ("kafka", "ssl_key_password"),
    "KAFKA_REPLICATION_FACTOR": ("kafka", "replication_factor"),
    "KAFKA_MIN_INSYNC_REPLICAS": ("kafka", "min_insync_replicas"),
    "SCHEMA_REGISTRY_URL": ("registry", "url"),
    "SCHEMA_REGISTRY_BASIC_AUTH_USER": ("registry", "basic_auth_user"),
    "SCHEMA_REGISTRY_BASIC_AUTH_PASSWORD": ("registry", "basic_auth_password"),
    "SCHEMA_REGISTRY_CA_LOCATION": ("registry", "ssl_ca_location"),
    "DATABASE_URL": ("database", "url"),
    "SINK_DATABASE_URL": ("database", "sink_url"),
    "ROUTER_DATABASE_URL": ("database", "router_url"),
    "ANALYST_DATABASE_URL": ("database", "analyst_url"),
    "MASSIVE_API_KEY": ("polygon", "api_key"),
    "POLYGON_API_KEY": ("polygon", "api_key"),  # after its alias: POLYGON_API_KEY wins when both are set
    "POLYGON_WS_URL": ("polygon", "ws_url"),
    "POLYGON_REST_URL": ("polygon", "rest_url"),
    "TRADIER_TOKEN": ("tradier", "token"),
    "TRADIER_ACCOUNT_ID": ("tradier", "account_id"),
    "TRADIER_BASE_URL": ("tradier", "base_url"),
    "TRADIER_STREAM_URL": ("tradier", "stream_url"),
    "SCALP_LOG_DIR": ("logging", "dir"),
    "SCALP_ARCHIVE_DIR": ("database", "archive_dir"),
    "SCALP_LOG_LEVEL": ("logging", "level"),
    "SCALP_LOG_FILE": ("logging", "file"),
    "SCALP_ALLOW_PLAINTEXT": ("security", "allow_plaintext"),
    "SCALP_STATE_DIR": ("stack", "state_dir"),
    "SCALP_DB_FLAVOUR": ("stack", "db_flavour"),
    "SCALP_TIMESCALEDB_TARBALL": ("stack", "timescaledb_tarball"),
}


# KAFKA_PROP_<NAME>: any librdkafka property, dots written as underscores (KAFKA_PROP_SOCKET_KEEPALIVE_ENABLE)
PROPERTY_PREFIX = "KAFKA_PROP_"

# SCALP_HTTP_HOST: the address every process's /healthz and /metrics listen on (containers: 0.0.0.0)
HTTP_HOSTS = (("sink", "http_host"), ("streams", "http_host"), ("execution", "http_host"), ("polygon", "http_host"))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return data


def _format_error(source: str, exc: ValidationError) -> str:
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    if not key:  # a rule over several sections
        return f"{source}: {first['msg'].removeprefix('Value error, ')}"
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key '{key}'"
    return f"{source}: key '{key}': {first['msg']}"


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> AppSettings:
    """Load ``path`` (default: $SCALP_CONFIG or config/pipeline.yaml) and apply env overrides."""
    env = os.environ if env is None else env
    if path is None:
        path = Path(env["SCALP_CONFIG"]) if env.get("SCALP_CONFIG") else DEFAULT_CONFIG
    data = _read_yaml(path)
    try:
        AppSettings.model_validate(data)  # file errors are reported against the file
    except ValidationError as exc:
        raise ConfigError(_format_error(str(path), exc)) from None
    overrides = [(var, target) for var, target in ENV_OVERRIDES.items()]
    overrides += [("SCALP_HTTP_HOST", target) for target in HTTP_HOSTS]
    for var, (section, key) in overrides:
        value = env.get(var)
        if value:
            data.setdefault(section, {})
            if not isinstance(data[section], dict):
                raise ConfigError(f"{path}: section '{section}' must be a mapping")
            data[section][key] = value
    passthrough = {
        var[len(PROPERTY_PREFIX) :].lower().replace("_", "."): value
        for var, value in env.items()
        if var.startswith(PROPERTY_PREFIX) and len(var) > len(PROPERTY_PREFIX)
    }
    if passthrough:
        kafka = data.setdefault("kafka", {})
        if not isinstance(kafka, dict):
            raise ConfigError(f"{path}: section 'kafka' must be a mapping")
        kafka["properties"] = {**(kafka.get("properties") or {}), **passthrough}
    try:
        return AppSettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error("environment", exc)) from None


def secret_or_none(secret: SecretStr | None) -> str | None:
    return None if secret is None else secret.get_secret_value()
