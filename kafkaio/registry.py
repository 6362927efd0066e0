"""Schema registry client over the Confluent-compatible API (Apicurio's /apis/ccompat/v7)."""

from __future__ import annotations

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from .clients import registry_client
from .errors import ConfigError, RetryableError, SerializationError
from .settings import RegistrySettings


class SchemaRegistry:
    """Registers Avro schemas, sets compatibility, fetches schemas by id."""

    def __init__(self, settings: RegistrySettings) -> None:
        self.settings = settings
        self._client = SchemaRegistryClient(registry_client(settings))

    def register(self, subject: str, schema_str: str) -> int:
        """Register (idempotent: an identical schema returns its existing id)."""
        try:
            return int(self._client.register_schema(subject, Schema(schema_str, "AVRO")))
        except SchemaRegistryError as exc:
            if exc.http_status_code == 409:
                raise SerializationError(
                    subject, None, f"schema rejected as incompatible: {exc.error_message}"
                ) from None
            if exc.http_status_code in (400, 422):
                raise SerializationError(subject, None, f"schema rejected: {exc.error_message}") from None
            self._refused(exc)
            raise RetryableError(f"registry {self.settings.url}: {exc}") from exc
        except Exception as exc:  # connection errors from httpx
            raise RetryableError(f"registry {self.settings.url} unreachable: {exc}") from exc

    def _refused(self, exc: SchemaRegistryError) -> None:
        """401/403: the login is wrong or lacks the right; retrying cannot help (exit 2, naming the settings)."""
        if exc.http_status_code in (401, 403):
            who = f"as {self.settings.basic_auth_user}" if self.settings.basic_auth_user else "without a login"
            raise ConfigError(
                f"registry {self.settings.url} refused the request {who} (HTTP {exc.http_status_code}): check "
                f"SCHEMA_REGISTRY_BASIC_AUTH_USER and SCHEMA_REGISTRY_BASIC_AUTH_PASSWORD"
            ) from None

    def set_compatibility(self, subject: str, level: str | None = None) -> None:
        level = (level or self.settings.compatibility).upper()
        if level not in {
            "BACKWARD",
            "BACKWARD_TRANSITIVE",
            "FORWARD",
            "FORWARD_TRANSITIVE",
            "FULL",
            "FULL_TRANSITIVE",
            "NONE",
        }:
            raise ConfigError(f"registry.compatibility: unknown level '{level}'")
        for attempt in (1, 2):
            try:
                self._client.set_compatibility(subject_name=subject, level=level)
                return
            except SchemaRegistryError as exc:
                # Apicurio answers 409 ("a rule named 'COMPATIBILITY' already exists") when another process
                # created the subject's rule between its check and its write (workers starting together): the
                # rule exists now, so the second PUT updates it
                if exc.http_status_code != 409 or attempt == 2:
                    raise

    def get_compatibility(self, subject: str) -> str:
        return str(self._client.get_compatibility(subject_name=subject))

    def is_compatible(self, subject: str, schema_str: str) -> bool:
        return bool(self._client.test_compatibility(subject, Schema(schema_str, "AVRO")))

    def schema_str(self, schema_id: int) -> str:
        try:
            return str(self._client.get_schema(schema_id).schema_str)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise SerializationError("registry", None, f"unknown schema id {schema_id}") from None
            self._refused(exc)
            raise RetryableError(f"registry {self.settings.url}: {exc}") from exc
        except Exception as exc:  # connection errors from the HTTP client
            raise RetryableError(f"registry {self.settings.url} unreachable: {type(exc).__name__}: {exc}") from exc

    def latest_id(self, subject: str) -> int:
        schema_id = self._client.get_latest_version(subject).schema_id
        if schema_id is None:
            raise SerializationError(subject, None, "registry returned no id for the latest version")
        return int(schema_id)

    def subjects(self) -> list[str]:
        return [str(s) for s in self._client.get_subjects()]
