"""Where the router records what it did beyond its output records (sent, adopted, refused, unknown orders).

The router takes any :class:`AuditSink`; the live router injects the database writer
(``sinks.audit.AuditWriter``), replays use :class:`NullAudit`.
"""

from __future__ import annotations

from typing import Any, Protocol


class AuditSink(Protocol):
    written: int
    spilled: int

    def record(self, kind: str, order_id: str | None, ts_ns: int | None, **detail: Any) -> None: ...

    def close(self, timeout_s: float = 30.0) -> None: ...


class NullAudit:
    """No audit trail (replays: everything they do is in their outputs)."""

    written = 0
    spilled = 0

    def record(self, kind: str, order_id: str | None, ts_ns: int | None, **detail: Any) -> None:
        return None

    def close(self, timeout_s: float = 30.0) -> None:
        return None
