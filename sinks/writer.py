"""Batch writes with the consumed offsets in the same transaction (exactly once).

One transaction per batch: advance ``sink_offsets`` for every partition in the batch, fenced on the
offset this worker last read or wrote, then COPY the rows of each table (a worker that lost a partition
in a rebalance cannot overwrite the new owner's progress, and a batch retried after a commit whose
acknowledgement was lost is dropped before it writes anything: FencedError).

Errors:
- a duplicate natural key (UniqueViolation) -> the batch is written again through a staging table with
  ``ON CONFLICT DO NOTHING`` (the unique keys are the second guard; duplicates are counted, not written);
- a row that violates a constraint or has invalid data -> isolated by bisection inside savepoints,
  handed to ``reject`` (the dead-letter queue) before the commit, and the rest is written;
- connection loss, shutdown, disk full and other operational errors -> RetryableError: nothing was
  committed, the caller keeps the batch and retries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import errors as pgerr
from psycopg import sql

from kafkaio.errors import RetryableError, ScalpError
from schemas.catalog import Catalog

from .columnar import ColumnarCodec, ColumnarError
from .rows import TableSpec, ns_to_datetime, table_spec
from .settings import DatabaseSettings

log = logging.getLogger(__name__)
DAY_NS = 86_400 * 1_000_000_000


class FencedError(ScalpError):
    """The stored offsets of these partitions moved (another worker took them over, or this worker's own
    commit went through although its acknowledgement was lost): drop what we hold for them and re-read."""

    def __init__(self, partitions: list[tuple[str, int]]) -> None:
        self.partitions = partitions
        super().__init__(
            f"stored offsets of {partitions} moved (another worker, or a commit whose acknowledgement was lost)"
        )


@dataclass(slots=True)
class Pending:
    """A decoded message waiting to be written (``meta``, the consumed message, is kept for the DLQ)."""

    topic: str  # catalog topic (= table)
    row: list[Any]
    ts_ns: int
    meta: Any


@dataclass
class Batch:
    rows: dict[str, list[Pending]] = field(default_factory=dict)
    # topic -> consumed messages for the columnar fast path (decoded at write time, sinks/columnar.py)
    raw: dict[str, list[Any]] = field(default_factory=dict)
    # (physical topic, partition) -> next offset to read once this batch is stored
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    size: int = 0

    def add(self, pending: Pending) -> None:
        self.rows.setdefault(pending.topic, []).append(pending)
        self.size += 1

    def add_raw(self, topic: str, message: Any) -> None:
        self.raw.setdefault(topic, []).append(message)
        self.size += 1

    def drop_partitions(
        self, partitions: set[tuple[str, int]], physical_of: Callable[[Pending], tuple[str, int]]
    ) -> None:
        for topic in list(self.rows):
            kept = [p for p in self.rows[topic] if physical_of(p) not in partitions]
            self.size -= len(self.rows[topic]) - len(kept)
            self.rows[topic] = kept
        for topic in list(self.raw):
            raw = [m for m in self.raw[topic] if (m.topic(), m.partition()) not in partitions]
            self.size -= len(self.raw[topic]) - len(raw)
            self.raw[topic] = raw
        for key in partitions:
            self.offsets.pop(key, None)


@dataclass
class WriteResult:
    written: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    rejected: int = 0
    fast: int = 0  # rows written through the columnar fast path


Reject = Callable[[Pending, str], None]

_OFFSET_SQL = (
    "INSERT INTO sink_offsets (group_id, topic, partition, next_offset, updated_at) "
    "VALUES (%s, %s, %s, %s, now()) ON CONFLICT (group_id, topic, partition) DO UPDATE "
    "SET next_offset = EXCLUDED.next_offset, updated_at = now() "
    "WHERE sink_offsets.next_offset IS NOT DISTINCT FROM %s RETURNING 1"
)
_BAD_ROW = (pgerr.IntegrityError, pgerr.DataError)


class PgWriter:
    def __init__(self, db: DatabaseSettings, group_id: str, catalog: Catalog) -> None:
        self.db = db
        self.group_id = group_id
        self.catalog = catalog
        self.conn: psycopg.Connection | None = None
        self.specs: dict[str, TableSpec] = {}
        self.partitioned = False
        self.partitioned_tables: set[str] = set()  # plain PostgreSQL: the tables partitioned by day
        self._known_days: set[tuple[str, int]] = set()
        self.expected: dict[tuple[str, int], int | None] = {}  # what sink_offsets holds, as we believe
        self.codecs: dict[str, ColumnarCodec | None] = {}  # topic -> fast path codec (None: row by row)

    # --- connection ------------------------------------------------------------------------------

    def connect(self) -> psycopg.Connection:
        if self.conn is not None and not self.conn.closed:
            return self.conn
        try:
            # keepalives: a connection that silently died (network partition) fails instead of hanging
            conn = psycopg.connect(
                self.db.dsn,
                connect_timeout=self.db.connect_timeout_s,
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
                tcp_user_timeout=30_000,
            )
        except psycopg.OperationalError as exc:
            raise RetryableError(f"database {self.db.safe_url} unreachable: {_reason(exc)}") from None
        row = conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        self.partitioned = not (row and row[0])
        if self.partitioned:
            has_partman = conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pg_partman'").fetchone()
            self.partitioned = bool(has_partman and has_partman[0])
            self.partitioned_tables = {
                r[0]
                for r in conn.execute(
                    "SELECT c.relname FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid"
                )
            }
        conn.commit()
        self.conn = conn
        return conn

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None

    def _broken(self) -> None:
        """Forget a connection after an operational error (it will be re-opened)."""
        try:
            if self.conn is not None:
                self.conn.close()
        finally:
            self.conn = None

    def spec(self, topic: str) -> TableSpec:
        found = self.specs.get(topic)
        if found is None:
            conn = self.connect()
            found = self.specs[topic] = table_spec(conn, self.catalog[topic])
            conn.commit()
        return found

    def stored_offsets(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Next offsets stored for this group (absent: never written)."""
        try:
            conn = self.connect()
            rows = conn.execute(
                "SELECT topic, partition, next_offset FROM sink_offsets WHERE group_id = %s AND topic = ANY(%s)",
                (self.group_id, sorted({t for t, _ in partitions})),
            ).fetchall()
            conn.commit()
        except psycopg.OperationalError as exc:
            self._broken()
            raise RetryableError(f"reading sink offsets: {_reason(exc)}") from None
        stored = {(t, p): o for t, p, o in rows}
        for key in partitions:
            self.expected[key] = stored.get(key)
        return {k: v for k, v in stored.items() if k in set(partitions)}

    # --- writing ---------------------------------------------------------------------------------

    def write(self, batch: Batch, reject: Reject) -> WriteResult:
        try:
            return self._write(batch, reject, dedupe=False)
        except pgerr.UniqueViolation:
            self._rollback()
            log.warning("duplicate natural keys in a batch of %d rows: writing it through staging", batch.size)
            return self._write(batch, reject, dedupe=True)

    def _rollback(self) -> None:
        if self.conn is not None and not self.conn.closed:
            try:
                self.conn.rollback()
            except psycopg.OperationalError:
                self._broken()

    def _write(self, batch: Batch, reject: Reject, dedupe: bool) -> WriteResult:
        result = WriteResult()
        try:
            conn = self.connect()
            with conn.transaction():
                self._advance_offsets(conn, batch)
                for topic, pendings in batch.rows.items():
                    if not pendings:
                        continue
                    spec = self.spec(topic)
                    if self.partitioned:
                        self._ensure_partitions(conn, topic, pendings)
                    written, duplicates = self._copy_isolating(conn, spec, pendings, reject, result, dedupe)
                    result.written[topic] = result.written.get(topic, 0) + written
                    result.duplicates += duplicates
                for topic, messages in batch.raw.items():
                    if messages:
                        fast = self._copy_columnar(conn, topic, messages)
                        result.written[topic] = result.written.get(topic, 0) + fast
                        result.fast += fast
        except (FencedError, ColumnarError):
            self._rollback()
            raise
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self._broken()
            raise RetryableError(f"writing a batch of {batch.size} rows: {_reason(exc)}") from None
        for key, next_offset in batch.offsets.items():
            self.expected[key] = next_offset
        return result

    def _advance_offsets(self, conn: psycopg.Connection, batch: Batch) -> None:
        """Advance the batch's offsets first, fenced on the ones this worker last read or wrote: the updated
        rows stay locked until the commit (another worker's write of the same partitions waits, then finds
        them moved), and a batch whose offsets already moved is dropped before any row is written. That is
        also the retry after a commit whose acknowledgement was lost with the connection."""
        fenced = []
        for (topic, partition), next_offset in sorted(batch.offsets.items()):  # one order: no deadlocks
            key = (topic, partition)
            row = conn.execute(
                _OFFSET_SQL, (self.group_id, topic, partition, next_offset, self.expected.get(key))
            ).fetchone()
            if row is None:
                fenced.append(key)
        if fenced:
            raise FencedError(fenced)

    def _copy_columnar(self, conn: psycopg.Connection, topic: str, messages: Sequence[Any]) -> int:
        """The fast path: decode the batch's values at once and COPY them as CSV; any refusal (undecodable
        data, a bad row, a duplicate key) -> ColumnarError after the savepoint rolled back."""
        codec = self.codecs.get(topic)
        if codec is None:
            raise ColumnarError(f"{topic}: no fast path codec")
        body, days = codec.csv(codec.frame([m.value() for m in messages]))
        if self.partitioned:
            self._ensure_days(conn, topic, days)
        try:
            with conn.transaction(), conn.cursor() as cur, cur.copy(codec.copy_sql) as copy:
                copy.write(body)
        except _BAD_ROW as exc:
            raise ColumnarError(f"{topic}: {type(exc).__name__}: {_reason(exc)}") from None
        return len(messages)

    def _copy(self, conn: psycopg.Connection, spec: TableSpec, pendings: Sequence[Pending], dedupe: bool) -> int:
        """COPY rows into the table (or through a staging table, skipping duplicates); rows inserted."""
        if not dedupe:
            with conn.cursor() as cur, cur.copy(spec.copy_sql()) as copy:
                copy.set_types(list(spec.oids))
                for pending in pendings:
                    copy.write_row(pending.row)
            return len(pendings)
        stage = sql.Identifier(f"_stage_{spec.table}")
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in spec.columns)
        conn.execute(
            sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS").format(
                stage, sql.Identifier(spec.table)
            )
        )
        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(stage, columns)
        with conn.cursor() as cur:
            with cur.copy(copy_sql) as copy:
                copy.set_types(list(spec.oids))
                for pending in pendings:
                    copy.write_row(pending.row)
            cur.execute(
                sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING").format(
                    sql.Identifier(spec.table), columns, columns, stage
                )
            )
            inserted = cur.rowcount
            cur.execute(sql.SQL("TRUNCATE {}").format(stage))
        return max(inserted, 0)

    def _copy_isolating(
        self,
        conn: psycopg.Connection,
        spec: TableSpec,
        pendings: list[Pending],
        reject: Reject,
        result: WriteResult,
        dedupe: bool,
    ) -> tuple[int, int]:
        """Write ``pendings``; bad rows are found by bisection and rejected. Returns (written, duplicates)."""
        try:
            with conn.transaction():  # savepoint
                inserted = self._copy(conn, spec, pendings, dedupe)
                return inserted, len(pendings) - inserted
        except _BAD_ROW as exc:
            if isinstance(exc, pgerr.UniqueViolation) and not dedupe:
                raise
            if len(pendings) == 1:
                reject(pendings[0], f"{type(exc).__name__}: {_reason(exc)}")
                result.rejected += 1
                return 0, 0
        middle = len(pendings) // 2
        left = self._copy_isolating(conn, spec, pendings[:middle], reject, result, dedupe)
        right = self._copy_isolating(conn, spec, pendings[middle:], reject, result, dedupe)
        return left[0] + right[0], left[1] + right[1]

    def _ensure_partitions(self, conn: psycopg.Connection, topic: str, pendings: list[Pending]) -> None:
        """Plain PostgreSQL: create the daily partitions the rows need (pg_partman; idempotent) before COPY.

        Without them rows would land in the default partition, which then blocks partman from creating
        that day's partition later."""
        self._ensure_days(conn, topic, {p.ts_ns // DAY_NS for p in pendings})

    def _ensure_days(self, conn: psycopg.Connection, topic: str, days: set[int]) -> None:
        if topic not in self.partitioned_tables:  # config_snapshots, execution_control: one plain table
            return
        for day in sorted(days):
            if (topic, day) in self._known_days:
                continue
            start = ns_to_datetime(day * DAY_NS)
            try:
                with conn.transaction():  # savepoint: a failure here must not abort the batch
                    # both ends of the UTC day: the server's time zone decides where partman's days start
                    conn.execute(
                        "SELECT partman.create_partition_time(%s, ARRAY[%s::timestamptz, %s::timestamptz])",
                        (f"public.{topic}", start, ns_to_datetime((day + 1) * DAY_NS - 1000)),
                    )
            except psycopg.DatabaseError as exc:
                if isinstance(exc, psycopg.OperationalError):
                    raise
                log.warning(
                    "could not create the %s partition of %s (rows go to the default partition): %s",
                    start.date(),
                    topic,
                    _reason(exc),
                )
            self._known_days.add((topic, day))


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
