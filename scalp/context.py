"""Builds the components from settings (the only place that wires packages together)."""

from __future__ import annotations

from dataclasses import dataclass, field

from backtest.workflow import Research
from kafkaio.registry import SchemaRegistry
from schemas.catalog import Catalog, catalog
from schemas.serde import AvroSerde

from .settings import AppSettings, secret_or_none


@dataclass
class Context:
    settings: AppSettings
    catalog: Catalog = field(default_factory=catalog)
    _serde: AvroSerde | None = None

    @property
    def serde(self) -> AvroSerde:
        if self._serde is None:
            self._serde = AvroSerde(SchemaRegistry(self.settings.registry), self.settings.kafka, self.catalog)
        return self._serde

    def research(self) -> Research:
        """What the research workflow (backtest.workflow) needs of the settings."""
        s = self.settings
        return Research(
            s.kafka,
            s.database.role("analyst"),
            s.database.role("sink"),
            self.serde,
            s.streams.policy_file,
            s.streams.conditions_file,
            s.execution.paper,
            s.execution.fees,
            s.digest(),
            s.database.archive_dir,
            s.snapshot(),
        )

    def secrets(self) -> list[str]:
        """Every secret value this process was given (masked wherever it would appear)."""
        from urllib.parse import unquote, urlsplit

        s = self.settings
        values = [
            secret_or_none(s.polygon.api_key),
            secret_or_none(s.tradier.token),
            secret_or_none(s.kafka.sasl_password),
            secret_or_none(s.kafka.ssl_key_password),
            secret_or_none(s.registry.basic_auth_password),
        ]
        for url in (*s.database.urls(), s.registry.url):
            try:
                password = urlsplit(url).password
            except ValueError:
                password = None
            if password:
                values += [password, unquote(password)]
        return [v for v in values if v]
