"""`scalp stack up | down | status | env`: the three services in dependency order."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kafkaio.errors import ConfigError

from .base import Service, ServiceStatus
from .kafka import Kafka
from .postgres import Postgres
from .prometheus import Prometheus
from .registry import Registry
from .secure import DB_ROLE_OF, PRINCIPALS, ROLES, SecureFiles
from .settings import StackSettings


class Stack:
    """PostgreSQL first (the registry stores its schemas there), then Kafka, then the registry."""

    def __init__(
        self, settings: StackSettings, topic_prefix: str = "", metrics_ports: dict[str, int] | None = None
    ) -> None:
        self.settings = settings
        self.topic_prefix = topic_prefix  # the secured stack's ACLs are for topics of this prefix
        self.postgres = Postgres(settings)
        self.kafka = Kafka(settings)
        jdbc = f"jdbc:postgresql://{settings.host}:{settings.postgres_port}/apicurio"
        if settings.secure:  # its own role on its own database, over TLS
            files = SecureFiles(settings.state_dir)
            files.ensure()
            jdbc += f"?sslmode=verify-full&sslrootcert={files.ca}"
            self.registry = Registry(settings, jdbc, "apicurio", files.db_password("apicurio"))
        else:
            self.registry = Registry(settings, jdbc, settings.postgres_user)
        self.services: list[Service] = [self.postgres, self.kafka, self.registry]
        # optional (`up --monitoring`): stopped by `down`, reported by `status` while it runs
        self.prometheus = Prometheus(settings, metrics_ports or {})

    def up(self, report: Callable[[str], None] = lambda _: None, monitoring: bool = False) -> list[tuple[str, bool]]:
        """Start what is not running; returns (service, started) pairs. Idempotent. Services running in the
        other mode (plain or secured) are stopped first: both use the same ports. ``monitoring``: Prometheus
        too."""
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        other_mode = "plain" if self.settings.secure else "secured"
        for other in self._other_mode():
            if other.stop():
                report(f"{other.name}: the {other_mode} {other.name} stopped")
        wanted = "secure" if self.settings.secure else "plain"
        if self.registry.running_mode() not in (None, wanted):
            self.registry.stop()
            report(f"registry: stopped, to start again {wanted}")
        self.mode_file.write_text(wanted)
        results = []
        for service in [*self.services, *([self.prometheus] if monitoring else [])]:
            report(f"{service.name}: preparing")
            service.prepare()
            started = service.start()
            report(f"{service.name}: {'started' if started else 'already running'}")
            results.append((service.name, started))
        if self.settings.secure and self.topic_prefix:
            self.kafka.authorize(self.topic_prefix)
        return results

    def _other_mode(self) -> list[Service]:
        """The services of the other mode that keep data of their own (PostgreSQL and Kafka)."""
        other = self.settings.model_copy(update={"secure": not self.settings.secure})
        return [Postgres(other), Kafka(other)]

    @property
    def mode_file(self) -> Path:
        return self.settings.state_dir / "stack.mode"

    def down(self, report: Callable[[str], None] = lambda _: None) -> list[tuple[str, bool]]:
        results = []
        for service in reversed([*self.services, *self._other_mode(), self.prometheus]):
            stopped = service.stop()
            report(f"{service.name}: {'stopped' if stopped else 'not running'}")
            results.append((service.name, stopped))
        return results

    def status(self) -> list[ServiceStatus]:
        extra = [self.prometheus] if self.prometheus.pid() is not None else []
        return [service.status() for service in [*self.services, *extra]]

    def env(self, role: str | None = None) -> dict[str, str]:
        """What a client of the stack needs, as environment variables. Secured stack: the settings of the
        Kafka principal ``role`` (default: admin, the operator), its password included."""
        s = self.settings
        out = {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap,
            "SCHEMA_REGISTRY_URL": self.registry.ccompat_url,
            "DATABASE_URL": self.postgres.dsn(),
            "SCALP_STATE_DIR": str(s.state_dir),
            "SCALP_LOG_DIR": str(s.state_dir / "logs"),
        }
        if s.secure:
            files = SecureFiles(s.state_dir)
            if not files.secrets_file.exists():
                raise ConfigError("the secured stack was never started here: scalp stack up --secure")
            principal = role or "admin"
            if principal not in PRINCIPALS:
                raise ConfigError(f"--role: one of {', '.join(ROLES)} (got {principal!r})")
            del out["DATABASE_URL"]
            if principal == "admin":  # the operator: the schema owner, and every role's URL
                out["DATABASE_URL"] = self.postgres.dsn(role=DB_ROLE_OF["admin"])
                for name, role in (("SINK", "sink"), ("ROUTER", "execute"), ("ANALYST", "analyst")):
                    out[f"{name}_DATABASE_URL"] = self.postgres.dsn(role=DB_ROLE_OF[role])
            elif principal in DB_ROLE_OF:
                out["DATABASE_URL"] = self.postgres.dsn(role=DB_ROLE_OF[principal])
            out.update(
                {
                    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                    "KAFKA_SASL_USERNAME": principal,
                    "KAFKA_SASL_PASSWORD": files.password(principal),
                    "KAFKA_SSL_CA_LOCATION": str(files.ca),
                    "SCHEMA_REGISTRY_CA_LOCATION": str(files.ca),
                }
            )
        elif role is not None:
            raise ConfigError("--role needs the secured stack (scalp stack up --secure)")
        return out
