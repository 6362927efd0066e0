"""Test doubles for seams (never for the services under test)."""

from __future__ import annotations

import json

from kafkaio.errors import SerializationError


class InMemoryRegistry:
    """Implements schemas.registry.Registry in memory: ids by identical canonical JSON."""

    def __init__(self) -> None:
        self.by_id: dict[int, str] = {}
        self.subjects: dict[str, list[int]] = {}
        self.compatibility: dict[str, str] = {}

    def register(self, subject: str, schema_str: str) -> int:
        canonical = json.dumps(json.loads(schema_str), sort_keys=True)
        for schema_id, text in self.by_id.items():
            if text == canonical:
                self.subjects.setdefault(subject, []).append(schema_id)
                return schema_id
        schema_id = len(self.by_id) + 1
        self.by_id[schema_id] = canonical
        self.subjects.setdefault(subject, []).append(schema_id)
        return schema_id

    def set_compatibility(self, subject: str, level: str | None = None) -> None:
        self.compatibility[subject] = level or "BACKWARD"

    def schema_str(self, schema_id: int) -> str:
        if schema_id not in self.by_id:
            raise SerializationError("registry", None, f"unknown schema id {schema_id}")
        return self.by_id[schema_id]
