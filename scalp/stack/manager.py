"""`scalp stack up | down | status | env`: the three services in dependency order."""

from __future__ import annotations

from collections.abc import Callable

from .base import Service, ServiceStatus
from .kafka import Kafka
from .postgres import Postgres
from .registry import Registry
from .settings import StackSettings


class Stack:
    """PostgreSQL first (the registry stores its schemas there), then Kafka, then the registry."""

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.postgres = Postgres(settings)
        self.kafka = Kafka(settings)
        jdbc = f"jdbc:postgresql://{settings.host}:{settings.postgres_port}/apicurio"
        self.registry = Registry(settings, jdbc, settings.postgres_user)
        self.services: list[Service] = [self.postgres, self.kafka, self.registry]

    def up(self, report: Callable[[str], None] = lambda _: None) -> list[tuple[str, bool]]:
        """Start what is not running; returns (service, started) pairs. Idempotent."""
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        results = []
        for service in self.services:
            report(f"{service.name}: preparing")
            service.prepare()
            started = service.start()
            report(f"{service.name}: {'started' if started else 'already running'}")
            results.append((service.name, started))
        return results

    def down(self, report: Callable[[str], None] = lambda _: None) -> list[tuple[str, bool]]:
        results = []
        for service in reversed(self.services):
            stopped = service.stop()
            report(f"{service.name}: {'stopped' if stopped else 'not running'}")
            results.append((service.name, stopped))
        return results

    def status(self) -> list[ServiceStatus]:
        return [service.status() for service in self.services]

    def env(self) -> dict[str, str]:
        s = self.settings
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap,
            "SCHEMA_REGISTRY_URL": self.registry.ccompat_url,
            "DATABASE_URL": self.postgres.dsn(),
            "SCALP_STATE_DIR": str(s.state_dir),
            "SCALP_LOG_DIR": str(s.state_dir / "logs"),
        }
