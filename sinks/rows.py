"""Avro records -> COPY rows for the table named like the topic.

The column list comes from the table itself (information_schema order), so a column added by a
migration is written as soon as the topic carries the field. Conversions: timestamp-nanos -> timestamptz
(microseconds) or, into a bigint column, the nanoseconds as they are; ``ts`` additionally -> ``ts_ns``
bigint; nested records and JSON strings -> jsonb.

Hot path: COPY is binary, and the binary form of timestamptz is an int8 of microseconds since
2000-01-01 UTC (PostgreSQL's ``timestamptz_recv``, which also range-checks it). A timestamp-nanos field
going into a timestamptz column is therefore sent as that int8 (typed int8 for psycopg's C dumper),
not built into a datetime first: about 1 us less per timestamp, same stored value.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

from schemas.catalog import TopicSpec

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 UTC in microseconds since 1970
INT8_OID = 20
TIMESTAMPTZ_OID = 1184


def ns_to_datetime(ns: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=ns // 1000)


def _is_nanos(avro_type: Any) -> bool:
    if isinstance(avro_type, list):
        return any(_is_nanos(branch) for branch in avro_type)
    return isinstance(avro_type, dict) and avro_type.get("logicalType") == "timestamp-nanos"


@dataclass(frozen=True)
class TableSpec:
    table: str
    columns: tuple[str, ...]
    oids: tuple[int, ...]  # the types psycopg dumps the row values as (COPY BINARY wire types)
    row: Callable[[dict[str, Any]], list[Any]]
    sources: tuple[str, ...] = ()  # the record field of each column (``ts`` for ts_ns)
    pg_types: tuple[str, ...] = ()  # format_type() of each column

    def copy_sql(self) -> psycopg.sql.Composed:
        return psycopg.sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            psycopg.sql.Identifier(self.table),
            psycopg.sql.SQL(", ").join(psycopg.sql.Identifier(c) for c in self.columns),
        )


def table_spec(conn: psycopg.Connection, spec: TopicSpec) -> TableSpec:
    """Columns of table ``spec.name`` fed by the topic's fields (plus ts_ns), with a row builder."""
    rows = conn.execute(
        "SELECT a.attname, a.atttypid, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (spec.name,),
    ).fetchall()
    fields = {f["name"]: f["type"] for f in spec.schema["fields"]}
    columns: list[str] = []
    oids: list[int] = []
    pg_types: list[str] = []
    sources: list[str] = []
    fixes: list[tuple[int, Callable[[Any], Any]]] = []
    for name, oid, type_name in rows:
        if name == "ts_ns" and "ts" in fields:
            sources.append("ts")
        elif name in fields:
            fix = _converter(fields[name], type_name)
            if fix is not None:
                fixes.append((len(sources), fix))
            if fix is _pg_micros:
                oid = INT8_OID  # timestamptz's binary wire form (see the module docstring)
            sources.append(name)
        else:
            continue  # a column the topic does not feed (defaults apply)
        columns.append(name)
        oids.append(oid)
        pg_types.append(type_name)
    getter = itemgetter(*sources)

    def row(record: dict[str, Any]) -> list[Any]:
        values = list(getter(record))
        for index, fix in fixes:
            values[index] = fix(values[index])
        return values

    return TableSpec(spec.name, tuple(columns), tuple(oids), row, tuple(sources), tuple(pg_types))


def _nanos(value: Any) -> Any:
    return None if value is None else EPOCH + dt.timedelta(microseconds=value // 1000)


def _pg_micros(value: Any) -> Any:
    """Nanoseconds since 1970 -> the binary COPY form of timestamptz (microseconds since 2000, floored)."""
    return None if value is None else value // 1000 - PG_EPOCH_US


def _jsonb(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        value = orjson.loads(value)  # JSON text carried in a string field
    return Jsonb(value, dumps=_dumps)


def _converter(avro_type: Any, pg_type: str) -> Callable[[Any], Any] | None:
    if _is_nanos(avro_type):
        if pg_type == "bigint":
            return None  # nanoseconds kept exact (features.last_trade_ts, last_quote_ts)
        return _pg_micros if pg_type == "timestamp with time zone" else _nanos
    if pg_type == "jsonb":
        return _jsonb
    return None


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj, default=str).decode()
