"""The project's exception tree (one root, retryable vs fatal).

    ScalpError
    ├── ConfigError            bad configuration or usage; the CLI exits 2
    ├── RetryableError         a transient failure: retry with backoff
    ├── FatalError             retrying cannot help; stop and report
    │   └── ServiceError       a local service could not be started or reached
    └── SerializationError     a record does not match its schema (names topic and field)

Every package may import this module; it imports nothing of the project.
Messages never carry secrets: callers pass redacted URLs and DSNs.
"""

from __future__ import annotations


class ScalpError(Exception):
    """Root of every error raised on purpose by scalp-pipeline."""


class ConfigError(ScalpError):
    """Invalid configuration or command-line usage (exit code 2)."""


class RetryableError(ScalpError):
    """A transient failure that may succeed when retried."""


class FatalError(ScalpError):
    """A failure that retrying cannot fix."""


class ServiceError(FatalError):
    """A local service (Kafka, registry, PostgreSQL) could not be started or reached."""


class SerializationError(ScalpError):
    """A record could not be encoded or decoded with its topic's schema."""

    def __init__(self, topic: str, field: str | None, reason: str) -> None:
        self.topic = topic
        self.field = field
        self.reason = reason
        where = f"{topic}.{field}" if field else topic
        super().__init__(f"{where}: {reason}")
