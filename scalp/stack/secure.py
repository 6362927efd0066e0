"""The secured local stack's material and Kafka authorization: a local CA and the services' certificate,
generated passwords (files readable by their owner only), the principals' SCRAM credentials and ACLs.

Principals (SCRAM-SHA-512 over SASL_SSL) and what each may do, on the topics of the configured prefix:

- ingest: reads and writes the market topics and ingest_gaps (it reads them back to de-duplicate);
- streams: reads market_trades, market_quotes, trade_ledger and orders; writes features, signals,
  risk_decisions, order_intents, risk_day, and its own state topics; reads and writes config_snapshots;
- execute: reads order_intents, execution_control, market_quotes and its own outputs (read back at start);
  writes orders, fills, trade_ledger, account_snapshot;
- sink: reads every topic; analyst: reads every topic and writes nothing.

Each writes the dead-letter topics of what it reads. Every principal may describe every topic (so it can
check they exist and how they are configured) but create or alter none; ``admin`` (the operator, a super
user) creates topics, registers schemas and issues ``scalp halt`` and friends.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from kafkaio.acl import Grant
from schemas import topics as t

PRINCIPALS = ("admin", "ingest", "streams", "execute", "sink", "analyst")
ROLES = PRINCIPALS[1:]
# PostgreSQL login roles: the cluster's superuser (the stack's own), the schema owner (migrations), one per
# process that connects (members of the group roles migration 0012 creates), and the registry's own
DB_ROLES = ("scalp", "scalp_owner", "scalp_sink", "scalp_execute", "scalp_analyst", "apicurio")
# principal -> the database role its commands connect as (ingest and streams use no database)
DB_ROLE_OF = {"admin": "scalp_owner", "sink": "scalp_sink", "execute": "scalp_execute", "analyst": "scalp_analyst"}
BROKER = "broker"  # the certificate's CN: the broker's own principal on its TLS-only listeners
MARKET = (t.MARKET_TRADES, t.MARKET_QUOTES, t.BARS_1M, t.OPTIONS_CHAIN, t.INGEST_GAPS)
STREAMS_IN = (t.MARKET_TRADES, t.MARKET_QUOTES, t.TRADE_LEDGER, t.ORDERS)
STREAMS_OUT = (t.FEATURES, t.SIGNALS, t.RISK_DECISIONS, t.ORDER_INTENTS, t.RISK_DAY)
EXECUTE_OUT = (t.ORDERS, t.FILLS, t.TRADE_LEDGER, t.ACCOUNT_SNAPSHOT)
EXECUTE_IN = (t.ORDER_INTENTS, t.EXECUTION_CONTROL, t.MARKET_QUOTES, *EXECUTE_OUT)
# consumer groups: readers (never commit) and each service's own
READER_GROUPS = ("scalp-reader-", "scalp-probe", "scalp-topics-list", "scalp-roundtrip")
GROUPS = {
    "ingest": READER_GROUPS,
    "streams": READER_GROUPS,  # + its Faust app id (with the topic prefix), added by acl_plan
    "execute": (*READER_GROUPS, "scalp-execute-", "scalp-control-"),
    "sink": (*READER_GROUPS, "scalp-sink"),
    "analyst": (*READER_GROUPS, "scalp-sink-status"),
}


def acl_plan(prefix: str, dlq_suffix: str, streams_app: str) -> list[Grant]:
    """Every grant of the principals (module docstring) for topics named ``<prefix><topic>``."""
    grants: list[Grant] = []

    def topics(principal: str, names: Iterable[str], *operations: str) -> None:
        for name in names:
            grants.extend(Grant(principal, "topic", prefix + name, op) for op in operations)

    def dlqs(principal: str, names: Iterable[str]) -> None:
        topics(principal, (n + dlq_suffix for n in names), "WRITE")

    everything = t.ALL
    topics("ingest", MARKET, "READ", "WRITE")
    dlqs("ingest", MARKET)
    topics("streams", STREAMS_IN, "READ")
    topics("streams", STREAMS_OUT, "WRITE")
    dlqs("streams", STREAMS_IN)
    topics("streams", (t.CONFIG_SNAPSHOTS,), "READ", "WRITE")  # publishes the configuration it runs with
    grants.append(Grant("streams", "topic", prefix + streams_app, "ALL", prefixed=True))  # its state topics
    grants.append(Grant("streams", "group", prefix + streams_app, "READ", prefixed=True))
    topics("execute", EXECUTE_IN, "READ")
    topics("execute", EXECUTE_OUT, "WRITE")
    dlqs("execute", EXECUTE_IN)
    topics("sink", everything, "READ")
    dlqs("sink", everything)
    topics("analyst", everything, "READ")
    topics("analyst", (n + dlq_suffix for n in everything), "READ")
    for principal in ROLES:
        # see that every topic exists and how it is configured (creating or altering is the operator's)
        if prefix:
            grants.append(Grant(principal, "topic", prefix, "DESCRIBE", prefixed=True))
            grants.append(Grant(principal, "topic", prefix, "DESCRIBE_CONFIGS", prefixed=True))
        else:
            grants.append(Grant(principal, "topic", "*", "DESCRIBE"))
            grants.append(Grant(principal, "topic", "*", "DESCRIBE_CONFIGS"))
        grants.extend(Grant(principal, "group", g, "READ", prefixed=True) for g in GROUPS[principal])
    return grants


class SecureFiles:
    """``<state dir>/secure`` (mode 0700): ``ca.pem`` (what clients trust), ``ca.key``, ``server.pem`` and
    ``server.key`` (127.0.0.1 and localhost, for Kafka, the registry and PostgreSQL), ``server-bundle.pem``
    (key and certificate, Kafka's PEM keystore) and ``secrets.json`` (generated passwords). Made once; every
    file but the CA certificate is readable by its owner only."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "secure"
        self.ca = self.dir / "ca.pem"
        self.ca_key = self.dir / "ca.key"
        self.cert = self.dir / "server.pem"
        self.key = self.dir / "server.key"
        self.bundle = self.dir / "server-bundle.pem"
        self.secrets_file = self.dir / "secrets.json"

    def ensure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        body = json.loads(self.secrets_file.read_text()) if self.secrets_file.exists() else {}
        wanted = {"kafka": PRINCIPALS, "db": DB_ROLES}
        if any(name not in body.get(section, {}) for section, names in wanted.items() for name in names):
            for section, names in wanted.items():
                got = body.setdefault(section, {})
                for name in names:
                    got.setdefault(name, secrets.token_urlsafe(24))
            _write_private(self.secrets_file, json.dumps(body, indent=1).encode())
        if not (self.ca.exists() and self.cert.exists() and self.key.exists() and self.bundle.exists()):
            self._certificates()

    def password(self, principal: str) -> str:
        """The Kafka principal's SCRAM password."""
        return str(json.loads(self.secrets_file.read_text())["kafka"][principal])

    def db_password(self, role: str) -> str:
        """The PostgreSQL login role's password."""
        return str(json.loads(self.secrets_file.read_text())["db"][role])

    def all_secrets(self) -> list[str]:
        """Every generated secret (for scans that none leaked)."""
        body = json.loads(self.secrets_file.read_text())
        return [v for section in body.values() for v in section.values()]

    def _certificates(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "scalp local CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=825))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, BROKER)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        pem = serialization.Encoding.PEM
        pkcs8 = serialization.PrivateFormat.PKCS8
        plain = serialization.NoEncryption()
        key_pem = key.private_bytes(pem, pkcs8, plain)
        cert_pem = cert.public_bytes(pem) + ca.public_bytes(pem)
        _write_private(self.ca_key, ca_key.private_bytes(pem, pkcs8, plain))
        self.ca.write_bytes(ca.public_bytes(pem))
        _write_private(self.key, key_pem)
        self.cert.write_bytes(cert_pem)
        _write_private(self.bundle, key_pem + cert_pem)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a file only its owner can read (created so, never world-readable meanwhile)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
