"""Kafka authorization through the admin client: SCRAM credentials and ACLs (idempotent)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin._acl import AclBinding, AclOperation, AclPermissionType
from confluent_kafka.admin._resource import ResourcePatternType, ResourceType
from confluent_kafka.admin._scram import (
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from . import clients
from .errors import RetryableError
from .settings import KafkaSettings

SCRAM_ITERATIONS = 8192


@dataclass(frozen=True)
class Grant:
    """One ACL: ``principal`` (a user name) may ``operation`` on the ``resource`` ("topic" or "group") named
    ``name``; ``prefixed``: on every name that starts with it."""

    principal: str
    resource: str
    name: str
    operation: str  # an AclOperation name: READ, WRITE, DESCRIBE, DESCRIBE_CONFIGS, CREATE, ALL
    prefixed: bool = False

    def binding(self) -> AclBinding:
        return AclBinding(
            ResourceType[self.resource.upper()],
            self.name,
            ResourcePatternType.PREFIXED if self.prefixed else ResourcePatternType.LITERAL,
            f"User:{self.principal}",
            "*",
            AclOperation[self.operation],
            AclPermissionType.ALLOW,
        )


def upsert_users(kafka: KafkaSettings, passwords: Mapping[str, str], timeout_s: float = 30.0) -> None:
    """Create or update each user's SCRAM-SHA-512 credential (as a principal allowed to alter them)."""
    admin = clients.admin(kafka)
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(user, info, password.encode()) for user, password in passwords.items()
    ]
    for user, future in admin.alter_user_scram_credentials(upserts, request_timeout=timeout_s).items():
        try:
            future.result()
        except KafkaException as exc:
            raise RetryableError(f"setting the SCRAM credential of {user} failed: {exc}") from exc


def grant(kafka: KafkaSettings, grants: Iterable[Grant], timeout_s: float = 30.0) -> int:
    """Create the ACLs (existing ones are left as they are); returns how many were asked for."""
    bindings = sorted({g.binding() for g in grants}, key=str)
    admin = clients.admin(kafka)
    for binding, future in admin.create_acls(bindings, request_timeout=timeout_s).items():
        try:
            future.result()
        except KafkaException as exc:
            raise RetryableError(f"creating ACL {binding} failed: {exc}") from exc
    return len(bindings)
