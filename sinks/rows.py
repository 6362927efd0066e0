"""Avro records -> COPY rows for the table named like the topic.

The column list comes from the table itself (information_schema order), so a column added by a
migration is written as soon as the topic carries the field. Conversions: timestamp-nanos -> timestamptz
(exact, microseconds), ``ts`` additionally -> ``ts_ns`` bigint, nested records and JSON strings -> jsonb.
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
_US = dt.timedelta(microseconds=1)


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
    oids: tuple[int, ...]
    row: Callable[[dict[str, Any]], tuple[Any, ...]]

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
    steps: list[Callable[[dict[str, Any]], Any]] = []
    for name, oid, type_name in rows:
        if name == "ts_ns" and "ts" in fields:
            steps.append(itemgetter("ts"))
        elif name in fields:
            steps.append(_converter(name, fields[name], type_name))
        else:
            continue  # a column the topic does not feed (defaults apply)
        columns.append(name)
        oids.append(oid)

    def row(record: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(step(record) for step in steps)

    return TableSpec(spec.name, tuple(columns), tuple(oids), row)


def _converter(name: str, avro_type: Any, pg_type: str) -> Callable[[dict[str, Any]], Any]:
    if _is_nanos(avro_type):

        def nanos(record: dict[str, Any]) -> Any:
            value = record[name]
            return None if value is None else EPOCH + dt.timedelta(microseconds=value // 1000)

        return nanos
    if pg_type == "jsonb":

        def jsonb(record: dict[str, Any]) -> Any:
            value = record[name]
            if value is None:
                return None
            if isinstance(value, str):
                value = orjson.loads(value)  # JSON text carried in a string field
            return Jsonb(value, dumps=_dumps)

        return jsonb
    return itemgetter(name)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj, default=str).decode()
