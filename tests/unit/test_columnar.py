"""The sink's fast path codec: a batch of framed Avro values -> COPY CSV, value for value as the row path."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import fastavro
import pytest

from schemas.catalog import catalog
from schemas.serde import wire_schema
from sinks.columnar import ColumnarCodec, ColumnarError
from sinks.rows import TableSpec

QUOTE_COLUMNS = (
    ("symbol", "symbol", "text"), ("ts", "ts", "timestamp with time zone"), ("ts_ns", "ts", "bigint"),
    ("bid", "bid", "double precision"), ("ask", "ask", "double precision"), ("bid_size", "bid_size", "bigint"),
    ("ask_size", "ask_size", "bigint"), ("bid_exchange", "bid_exchange", "integer"),
    ("ask_exchange", "ask_exchange", "integer"), ("conditions", "conditions", "integer[]"),
    ("tape", "tape", "integer"), ("seq", "seq", "bigint"), ("ts_ingest", "ts_ingest", "timestamp with time zone"),
    ("source", "source", "text"),
)  # fmt: skip


def spec(columns: tuple[tuple[str, str, str], ...] = QUOTE_COLUMNS) -> TableSpec:
    names, sources, types = zip(*columns, strict=True)
    return TableSpec("market_quotes", names, (0,) * len(names), lambda r: [], sources, types)


def framed(records: list[dict[str, Any]]) -> list[bytes]:
    parsed = fastavro.parse_schema(wire_schema(catalog()["market_quotes"].schema))
    out = []
    for r in records:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, r)
        out.append(b"\x00\x00\x00\x00\x07" + buf.getvalue())
    return out


def quote(i: int, **changes: Any) -> dict[str, Any]:
    base = {
        "symbol": "SPY", "ts": 1_795_446_000_000_000_999 + i, "bid": 600.01, "ask": 600.02, "bid_size": 100,
        "ask_size": 200, "bid_exchange": 11, "ask_exchange": 12, "conditions": [], "tape": None, "seq": i,
        "ts_ingest": 1_795_446_000_000_001_500, "source": "ws",
    }  # fmt: skip
    return base | changes


def test_rows_render_as_the_row_path_stores_them() -> None:
    codec = ColumnarCodec.build(spec(), catalog()["market_quotes"].schema)
    assert codec is not None
    records = [quote(0), quote(1, conditions=[1, 2], tape=3, source="", bid=1e-7), quote(2, symbol='A,"B')]
    body, days = codec.csv(codec.frame(framed(records)))
    rows = list(csv.reader(io.StringIO(body.decode())))
    assert len(rows) == 3
    first = dict(zip([c[0] for c in QUOTE_COLUMNS], rows[0], strict=True))
    # timestamps floored to microseconds (ns // 1000), as the binary row path sends them
    assert first["ts"] == "2026-11-23 15:00:00.000000+00"
    assert first["ts_ns"] == "1795446000000000999"
    assert first["ts_ingest"] == "2026-11-23 15:00:00.000001+00"
    assert (first["conditions"], first["tape"], first["bid"]) == ("{}", "", "600.01")
    second = dict(zip([c[0] for c in QUOTE_COLUMNS], rows[1], strict=True))
    assert (second["conditions"], second["tape"], float(second["bid"])) == ("{1,2}", "3", 1e-7)
    assert rows[2][0] == 'A,"B'  # quoted and unquoted back by the CSV rules
    raw = body.decode().splitlines()
    assert raw[1].endswith(',""')  # an empty string is quoted (PostgreSQL reads unquoted empty as NULL)
    assert ",," in raw[0]  # the null tape is an unquoted empty field
    assert days == {dt.date(2026, 11, 23).toordinal() - dt.date(1970, 1, 1).toordinal()}


def test_tables_with_other_shapes_stay_on_the_row_path() -> None:
    schema = catalog()["market_quotes"].schema
    as_json = tuple((n, s, "jsonb" if n == "conditions" else t) for n, s, t in QUOTE_COLUMNS)
    naive = tuple((n, s, "timestamp without time zone" if n == "ts" else t) for n, s, t in QUOTE_COLUMNS)
    assert ColumnarCodec.build(spec(as_json), schema) is None
    assert ColumnarCodec.build(spec(naive), schema) is None
    assert ColumnarCodec.build(spec(), catalog()["orders"].schema) is None  # nested legs, history


def test_undecodable_values_make_the_batch_fall_back() -> None:
    codec = ColumnarCodec.build(spec(), catalog()["market_quotes"].schema)
    assert codec is not None
    values = framed([quote(0), quote(1), quote(2)])
    with pytest.raises(ColumnarError):
        codec.frame([values[0], values[1][:9]])  # a truncated datum
    with pytest.raises(ColumnarError):
        codec.frame([values[0] + b"\x02\x04", values[1]])  # trailing bytes that break the next datum
    # trailing bytes that happen to form a whole datum: the block reads quote 2 where message 1 holds
    # quote 1 (each message alone decodes to its own record, as the row path would store it)
    with pytest.raises(ColumnarError, match="misaligned"):
        codec.frame([values[0] + values[2][5:], values[1]])
