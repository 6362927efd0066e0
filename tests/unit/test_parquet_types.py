"""Parquet the project writes is typed from the Avro contracts and comes back as the records it was made from;
the archive files ticks under their New York session date, and the old archive layout migrates into the
new one without losing or changing a row."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from backtest.sources import ArchiveMissing, from_archive
from schemas.arrow import UTC_NS, arrow_schema, to_records, to_table
from schemas.catalog import catalog
from schemas.examples import example_record
from sinks.archive import day_bounds, legacy_files, migrate_legacy, session_date

NS = 1_000_000_000


@pytest.mark.parametrize("topic", catalog().names())
def test_every_topic_round_trips_through_parquet_with_its_types(topic: str, tmp_path: Path) -> None:
    spec = catalog()[topic]
    record = example_record(catalog(), topic)
    schema = arrow_schema(spec.schema)
    path = tmp_path / "t.parquet"
    pq.write_table(to_table([record], schema), path)
    back = pq.read_table(path)
    assert back.schema.field("ts").type == UTC_NS
    for field in spec.schema["fields"]:
        kind = field["type"]
        if isinstance(kind, dict) and kind.get("logicalType") == "decimal":
            assert back.schema.field(field["name"]).type == pa.decimal128(kind["precision"], kind["scale"])
    assert to_records(back) == [record]


def test_event_times_keep_their_nanoseconds_and_money_stays_decimal(tmp_path: Path) -> None:
    record = example_record(catalog(), "account_snapshot")
    record["ts"] = 1_795_446_000_123_456_789
    record["cash"] = Decimal("25000.123456")
    path = tmp_path / "a.parquet"
    pq.write_table(to_table([record], arrow_schema(catalog()["account_snapshot"].schema)), path)
    back = to_records(pq.read_table(path))[0]
    assert back["ts"] == 1_795_446_000_123_456_789
    assert back["cash"] == Decimal("25000.123456")


def test_the_session_date_is_new_yorks_across_midnight_utc_and_the_clock_change() -> None:
    evening = int(dt.datetime(2026, 11, 21, 0, 30, tzinfo=dt.UTC).timestamp()) * NS  # 19:30 ET on the 20th
    assert session_date(evening) == dt.date(2026, 11, 20)
    start, end = day_bounds(dt.date(2026, 11, 1))  # clocks go back: a 25-hour day
    assert (end - start) // NS == 25 * 3600
    assert session_date(start) == dt.date(2026, 11, 1)
    assert session_date(end - 1) == dt.date(2026, 11, 1)
    assert session_date(end) == dt.date(2026, 11, 2)


def _legacy_row(ts: dt.datetime, seq: int) -> dict[str, object]:
    ns = int(ts.timestamp()) * NS + seq  # sub-microsecond digits the old ts column could not hold
    return {
        "symbol": "SPY", "ts": ts, "ts_ns": ns, "price": 600.0 + seq / 100, "size": 100, "conditions": [],
        "exchange": 4, "tape": None, "seq": seq, "trade_id": str(seq), "ts_participant": None,
        "ts_ingest": ts, "source": "ws",
    }  # fmt: skip


def test_the_old_layout_migrates_into_session_dates_and_reads_back_unchanged(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    day_one = [_legacy_row(dt.datetime(2026, 11, 20, 15, 0, tzinfo=dt.UTC), 1)]
    # the UTC file of the 21st starts with the 20th's evening session
    day_two = [
        _legacy_row(dt.datetime(2026, 11, 21, 0, 30, tzinfo=dt.UTC), 2),
        _legacy_row(dt.datetime(2026, 11, 21, 15, 0, tzinfo=dt.UTC), 3),
    ]
    for name, rows in (("2026-11-20", day_one), ("2026-11-21", day_two)):
        path = root / "market_trades" / "SPY" / f"{name}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), path)
    assert len(legacy_files(root)[("market_trades", "SPY")]) == 2
    with pytest.raises(ArchiveMissing, match="archive-migrate"):  # not read as if it were the new layout
        from_archive(root, None, None, ("market_trades",))
    planned = migrate_legacy(root, dry_run=True)
    assert sorted(planned.values()) == [1, 2]
    assert (root / "market_trades" / "SPY" / "2026-11-20.parquet").exists()  # a dry run changes nothing
    migrate_legacy(root)
    assert legacy_files(root) == {}
    assert not (root / "market_trades" / "SPY").exists()
    dates = sorted(p.parent.name for p in root.rglob("*.parquet"))
    assert dates == ["date=2026-11-20", "date=2026-11-21"]
    read = from_archive(root, None, None, ("market_trades",))
    assert [(r["seq"], r["ts"], r["symbol"]) for _, r in read.records] == [
        (row["seq"], row["ts_ns"], "SPY") for row in day_one + day_two
    ]
    in_range = from_archive(root, day_bounds(dt.date(2026, 11, 20))[0], day_bounds(dt.date(2026, 11, 20))[1])
    assert [r["seq"] for _, r in in_range.records] == [1, 2]


def test_an_archive_replay_without_an_archive_is_a_usage_error(tmp_path: Path) -> None:
    from tests.cli_util import scalp

    common = ["--source", "archive", "--from", "2026-11-19", "--to", "2026-11-20", "--out", str(tmp_path)]
    missing = scalp("replay", *common, "--archive-dir", str(tmp_path / "nowhere"))
    assert missing.returncode == 2
    assert "no archive at" in missing.stderr
    unset = scalp("replay", *common, env={"SCALP_ARCHIVE_DIR": ""})
    assert unset.returncode == 2
    assert "--archive-dir or SCALP_ARCHIVE_DIR" in unset.stderr
    assert not any(tmp_path.iterdir())  # no run directory left behind


def test_kafka_holds_whole_only_the_dates_after_what_retention_cut() -> None:
    from backtest.days import kafka_span

    d = dt.date
    never_cut = [(False, d(2026, 11, 19), d(2026, 11, 20)), (False, d(2026, 11, 20), d(2026, 11, 20))]
    assert kafka_span(never_cut) == (d(2026, 11, 19), d(2026, 11, 20))  # a later first record bounds nothing
    cut = [(True, d(2026, 11, 19), d(2026, 11, 23)), (False, d(2026, 11, 17), d(2026, 11, 23))]
    assert kafka_span(cut) == (d(2026, 11, 20), d(2026, 11, 23))  # the 19th may be cut short
    assert kafka_span([(True, d(2026, 11, 20), d(2026, 11, 20))]) is None  # nothing whole is left
    assert kafka_span([]) is None
