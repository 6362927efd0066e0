"""The frozen topic catalog: topics.yaml plus one Avro schema per topic."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from kafkaio.errors import ConfigError

HERE = Path(__file__).resolve().parent
AVRO_DIR = HERE / "avro"
TOPICS_FILE = HERE / "topics.yaml"
_EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    schema_file: str
    partitions: int
    retention_ms: int
    cleanup_policy: str
    doc: str
    schema: dict[str, Any] = field(repr=False, compare=False, hash=False)
    configs: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def kafka_configs(self) -> dict[str, str]:
        """Every topic config this catalog entry sets."""
        return {"retention.ms": str(self.retention_ms), "cleanup.policy": self.cleanup_policy, **self.configs}

    @property
    def dlq(self) -> str:
        return f"{self.name}.dlq"

    @property
    def schema_str(self) -> str:
        return json.dumps(self.schema, sort_keys=False)

    def key_of(self, record: dict[str, Any]) -> str:
        """The message key of ``record``: its key field as a string (dates as ISO dates)."""
        value = record[self.key]
        if self.key == "ts_date" and isinstance(value, int):  # Avro date: days since the epoch
            return (_EPOCH + dt.timedelta(days=value)).isoformat()
        if isinstance(value, dt.date):
            return value.isoformat()
        return str(value)

    def field_names(self) -> list[str]:
        return [f["name"] for f in self.schema["fields"]]


@dataclass(frozen=True)
class DlqSpec:
    partitions: int
    retention_ms: int
    cleanup_policy: str
    configs: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def kafka_configs(self) -> dict[str, str]:
        return {"retention.ms": str(self.retention_ms), "cleanup.policy": self.cleanup_policy, **self.configs}


@dataclass(frozen=True)
class Catalog:
    topics: dict[str, TopicSpec]
    dlq: DlqSpec

    def __getitem__(self, name: str) -> TopicSpec:
        try:
            return self.topics[name]
        except KeyError:
            raise ConfigError(f"unknown topic '{name}'; known: {', '.join(self.topics)}") from None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.topics.values())

    def names(self) -> list[str]:
        return list(self.topics)

    def select(self, spec: str) -> list[TopicSpec]:
        """Topics named by a CLI argument: 'all' or a comma-separated list."""
        if spec.strip() == "all":
            return list(self.topics.values())
        return [self[name.strip()] for name in spec.split(",") if name.strip()]


_ALLOWED_KEYS = {"key", "schema", "partitions", "retention_ms", "cleanup_policy", "doc", "configs"}


def load_catalog(topics_file: Path = TOPICS_FILE, avro_dir: Path = AVRO_DIR) -> Catalog:
    raw = yaml.safe_load(topics_file.read_text(encoding="utf-8"))
    defaults = raw.get("defaults", {})
    topics: dict[str, TopicSpec] = {}
    for name, entry in raw["topics"].items():
        unknown = set(entry) - _ALLOWED_KEYS
        if unknown:
            raise ConfigError(f"{topics_file}: topics.{name}: unknown key '{sorted(unknown)[0]}'")
        merged = {**defaults, **entry}
        schema = json.loads((avro_dir / merged["schema"]).read_text(encoding="utf-8"))
        if merged["key"] not in {f["name"] for f in schema["fields"]}:
            raise ConfigError(f"{topics_file}: topics.{name}.key '{merged['key']}' is not a schema field")
        if merged["cleanup_policy"] not in ("delete", "compact"):
            raise ConfigError(f"{topics_file}: topics.{name}.cleanup_policy must be delete or compact")
        topics[name] = TopicSpec(
            name=name,
            key=merged["key"],
            schema_file=merged["schema"],
            partitions=int(merged["partitions"]),
            retention_ms=int(merged["retention_ms"]),
            cleanup_policy=merged["cleanup_policy"],
            doc=merged.get("doc", ""),
            schema=schema,
            configs={k: str(v) for k, v in {**defaults.get("configs", {}), **entry.get("configs", {})}.items()},
        )
    dlq = raw["dlq"]
    dlq_configs = {k: str(v) for k, v in dlq.get("configs", {}).items()}
    return Catalog(
        topics,
        DlqSpec(int(dlq["partitions"]), int(dlq["retention_ms"]), dlq["cleanup_policy"], dlq_configs),
    )


@cache
def catalog() -> Catalog:
    """The packaged catalog, loaded once per process."""
    return load_catalog()
