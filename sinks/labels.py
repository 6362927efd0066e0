"""Signal labels (TP/SL/TIME outcomes) into ``signal_labels``: one row per (signal, label rule), replaced when
the same rule labels a signal again."""

from __future__ import annotations

from typing import Any

from .db import connect
from .migrate import require_migrated
from .settings import DatabaseSettings

LABEL_COLUMNS = (
    "signal_id", "rule_digest", "ts", "symbol", "setup", "side", "entry_price", "outcome", "exit_ts", "exit_price",
    "r", "mfe", "mae", "run_id",
)  # fmt: skip
_TS = {"ts", "exit_ts"}
LABEL_UPSERT = (
    f"INSERT INTO signal_labels ({', '.join(LABEL_COLUMNS)}) VALUES "  # noqa: S608 - constants only
    f"({', '.join('to_timestamp(%s / 1e9)' if c in _TS else '%s' for c in LABEL_COLUMNS)}) "
    "ON CONFLICT (signal_id, rule_digest) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in LABEL_COLUMNS if c not in ("signal_id", "rule_digest"))
)


def upsert_labels(database: DatabaseSettings, rows: list[dict[str, Any]]) -> None:
    """Insert or replace ``rows`` (dicts with every column of :data:`LABEL_COLUMNS`; times in ns)."""
    if not rows:
        return
    with connect(database, autocommit=True) as conn:
        require_migrated(conn)  # migrations are the owner's: `scalp db migrate`
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(LABEL_UPSERT, [tuple(r[c] for c in LABEL_COLUMNS) for r in rows])
