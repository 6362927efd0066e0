"""One router per account: a PostgreSQL advisory lock held on a live connection.

The lock is taken with ``pg_try_advisory_lock`` on a connection the router keeps open for its whole life;
the server releases it the moment that connection ends. A router killed outright (SIGKILL, OOM) loses it at
once: the kernel closes its socket and the server's backend exits. A holder that vanishes without closing
(a dead host, a cut network) is detected by TCP keepalives the server sends on that connection
(``tcp_keepalives_idle/interval/count``, set per session), so its lock lapses within about
idle + interval x count seconds. The router checks every few seconds that its connection (and so its
lease) is still alive and stops at once when it is not: another router may hold the account by then.

The holder is named through ``application_name`` (router, account, host, pid), which the second router
reads from ``pg_stat_activity`` to say who holds the account.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket

import psycopg

from kafkaio.errors import ConfigError, ServiceError

log = logging.getLogger("scalp.execution")


class LeaseHeld(ConfigError):
    """Another router holds the account (exit 2: a usage error, nothing was started)."""


class LeaseLost(ServiceError):
    """The lease's connection ended: another router may hold the account now."""


def lease_name(prefix: str, broker: str, account: str) -> str:
    """What a lease is for: one account at one broker (within one topic prefix)."""
    return f"{prefix}{broker}:{account}"


def lock_key(name: str) -> int:
    """A signed 64-bit advisory-lock key for ``name`` (stable across processes and versions)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class AccountLease:
    def __init__(self, dsn: str, name: str, keepalive: tuple[int, int, int] = (10, 5, 3)) -> None:
        self.dsn = dsn
        self.name = name  # e.g. "tradier:VA0000001" (with the topic prefix, if any)
        self.key = lock_key(name)
        self.keepalive = keepalive
        self.holder = f"scalp-execute {name} {socket.gethostname()} pid {os.getpid()}"[:63]
        self.conn: psycopg.Connection | None = None

    def acquire(self) -> None:
        """Take the lease or raise LeaseHeld naming the holder."""
        idle, interval, count = self.keepalive
        try:
            conn = psycopg.connect(
                self.dsn,
                autocommit=True,
                application_name=self.holder,
                keepalives=1,
                keepalives_idle=idle,
                keepalives_interval=interval,
                keepalives_count=count,
                connect_timeout=10,
            )
        except psycopg.OperationalError as exc:  # its text names host and port, never the password
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ServiceError(f"cannot take the lease on {self.name}: the database is unreachable ({first})") from None
        for setting, value in (
            ("tcp_keepalives_idle", idle),
            ("tcp_keepalives_interval", interval),
            ("tcp_keepalives_count", count),
        ):
            conn.execute("SELECT set_config(%s, %s, false)", (setting, str(value)))
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        if not (row and row[0]):
            holder = self._holder(conn)
            conn.close()
            raise LeaseHeld(
                f"another router holds {self.name}: {holder}; stop it first (a killed router's lease lapses "
                f"when the database sees its connection end, at most about "
                f"{idle + interval * count} s for a vanished host)"
            )
        self.conn = conn
        log.info("lease on %s taken (%s)", self.name, self.holder)

    def _holder(self, conn: psycopg.Connection) -> str:
        hi, lo = (self.key >> 32) & 0xFFFFFFFF, self.key & 0xFFFFFFFF
        row = conn.execute(
            "SELECT a.application_name, a.client_addr::text, a.backend_start FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid AND l.objsubid = 1",
            (hi, lo),
        ).fetchone()
        if row is None:
            return "a session that has just ended (try again)"
        name, addr, since = row
        return f"{name or 'an unnamed session'} from {addr or 'a local socket'} since {since:%Y-%m-%d %H:%M:%S %Z}"

    def check(self) -> None:
        """Raise LeaseLost when the lease's connection has ended."""
        if self.conn is None:
            raise LeaseLost(f"the lease on {self.name} was never taken")
        try:
            self.conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise LeaseLost(f"the lease on {self.name} is lost ({type(exc).__name__}): stopping") from None

    def release(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()  # the server drops the lock with the session
            finally:
                self.conn = None
