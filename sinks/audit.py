"""The ledger helper: audit events written to PostgreSQL without ever blocking the trading loop.

``record()`` only puts the event on a bounded queue (``put_nowait``); a writer thread takes what is
queued and writes it in one transaction per batch into ``execution_audit``. When the queue is full, or the
database cannot take a batch after a few attempts, the events go to the spill file (one JSON object per
line) and are counted (``spilled``); nothing is dropped silently. ``close()`` writes what is left.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from kafkaio.errors import RetryableError
from kafkaio.retry import Backoff

from .settings import DatabaseSettings

log = logging.getLogger("scalp.execution.audit")


class AuditWriter:
    def __init__(
        self,
        connect: Callable[[], psycopg.Connection] | None,
        spill_path: Path,
        broker: str,
        *,
        max_queue: int = 10_000,
        batch: int = 500,
        attempts: int = 3,
    ) -> None:
        self.connect = connect
        self.spill_path = spill_path
        self.broker = broker
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=max_queue)
        self.batch = batch
        self.attempts = attempts
        self.written = 0
        self.spilled = 0
        self._spill_lock = threading.Lock()
        self._conn: psycopg.Connection | None = None
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, database: DatabaseSettings, spill_path: Path, broker: str, *, max_queue: int) -> AuditWriter:
        """A writer into ``execution_audit``; when the database cannot be reached now, every event goes to the
        spill file. A database without the migrations is a ConfigError: the router never migrates (that is the
        owner's `scalp db migrate`), and it may not."""
        from .db import connect
        from .migrate import require_migrated

        writer: Callable[[], psycopg.Connection] | None = None
        try:
            with connect(database) as conn:
                require_migrated(conn)
            writer = functools.partial(connect, database)
        except RetryableError as exc:
            log.warning("execution audit: %s; audit events go to the spill file", exc)
        return cls(writer, spill_path, broker, max_queue=max_queue)

    def record(self, kind: str, order_id: str | None, ts_ns: int | None, **detail: Any) -> None:
        """Never blocks: a full queue spills this event to the file instead."""
        event = {
            "recorded_at": dt.datetime.now(dt.UTC).isoformat(),  # audit time: when we recorded it
            "ts_ns": ts_ns,
            "kind": kind,
            "broker": self.broker,
            "order_id": order_id,
            "detail": detail,
        }
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            self._spill([event], "queue full")

    def close(self, timeout_s: float = 30.0) -> None:
        self.queue.put(None)
        self._thread.join(timeout_s)
        if self._conn is not None:
            self._conn.close()

    def _spill(self, events: list[dict[str, Any]], why: str) -> None:
        with self._spill_lock:
            self.spill_path.parent.mkdir(parents=True, exist_ok=True)
            with self.spill_path.open("a", encoding="utf-8") as fh:
                for event in events:
                    fh.write(json.dumps({**event, "spilled": why}, default=str) + "\n")
            self.spilled += len(events)
        log.warning("audit: %d events spilled to %s (%s)", len(events), self.spill_path, why)

    def _run(self) -> None:
        done = False
        while not done:
            first = self.queue.get()
            if first is None:
                break
            events = [first]
            while len(events) < self.batch:
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    done = True
                    break
                events.append(nxt)
            self._write(events)

    def _write(self, events: list[dict[str, Any]]) -> None:
        if self.connect is None:
            self._spill(events, "no database")
            return
        backoff = Backoff(base_s=0.2, cap_s=2.0)
        for attempt in range(self.attempts):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self.connect()
                with self._conn.transaction(), self._conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO execution_audit (recorded_at, ts_ns, kind, broker, order_id, detail) "
                        "VALUES (%s, %s, %s, %s, %s, %s)",
                        [
                            (e["recorded_at"], e["ts_ns"], e["kind"], e["broker"], e["order_id"], Jsonb(e["detail"]))
                            for e in events
                        ],
                    )
                self.written += len(events)
                return
            except psycopg.Error as exc:
                log.warning("audit: database write failed (%s), attempt %d", type(exc).__name__, attempt + 1)
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                time.sleep(backoff.next_delay())
        self._spill(events, "database unavailable")
