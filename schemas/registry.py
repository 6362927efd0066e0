"""What the serde needs of a schema registry (subject naming and the client seam for unit tests)."""

from __future__ import annotations

from typing import Protocol


def subject_for(topic: str) -> str:
    """TopicNameStrategy: values of ``topic`` are registered under ``<topic>-value``."""
    return f"{topic}-value"


class Registry(Protocol):
    """What the serde needs of a registry (the seam for unit tests)."""

    def register(self, subject: str, schema_str: str) -> int: ...

    def set_compatibility(self, subject: str, level: str | None = None) -> None: ...

    def schema_str(self, schema_id: int) -> str: ...
