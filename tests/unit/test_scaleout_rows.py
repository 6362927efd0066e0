"""The scale-out table keeps the rows of each N recorded apart for the same session, and only for it."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.scaleout_bench import RunResult, Shape, _unstamped, identical, markdown, remember, venue_counts


def _result(n: int, digest: str = "abc") -> RunResult:
    result = RunResult(n, events=1000 * n, seconds=10.0, latency_ms=[float(i) for i in range(1, 101)])
    result.cpu = {"ingest": 0.2, "streams": 0.4 * n, "sink": 0.1}
    result.max_lag = {"streams": 50.0, "sink": 20.0}
    result.end_lag = {"streams": 0.0, "sink": 0.0}
    result.digests = {t: (5, digest) for t in ("features", "signals", "risk_decisions", "order_intents", "risk_day")}
    return result


def test_runs_of_other_n_for_the_same_session_are_kept_and_a_rerun_replaces_its_row(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    hour = Shape("2026-11-20", Shape.market(300), "10:00", "11:00", bursts=4, speed=1.0)
    other = Shape("2026-11-20", Shape.market(60), "10:00", "10:03", bursts=1, speed=None)
    remember(path, hour, [_result(1)], "2026-12-04", "test machine")
    remember(path, other, [_result(1, "zzz"), _result(2, "zzz")], "2026-12-04", "test machine")
    rows = remember(path, hour, [_result(3), _result(2)], "2026-12-05", "test machine")
    assert [(r.n, r.recorded) for r in rows] == [(1, "2026-12-04"), (2, "2026-12-05"), (3, "2026-12-05")]
    assert rows[0].p50_ms == 51.0
    assert rows[0].p99_ms == 100.0
    assert identical(rows) == {}
    rows = remember(path, hour, [_result(2, "def")], "2026-12-06", "test machine")  # a re-run replaces its N's row
    assert [(r.n, r.recorded) for r in rows] == [(1, "2026-12-04"), (2, "2026-12-06"), (3, "2026-12-05")]
    assert set(identical(rows)) == {"features", "signals", "risk_decisions", "order_intents", "risk_day"}
    table = markdown(hour, rows)
    assert "300 symbols" in table
    assert "fed 1x real time" in table
    assert "NOT identical" in table
    assert table.count("| 2026-12-0") == 3
    assert len(json.loads(path.read_text())) == 2  # one entry per session


def test_one_n_is_not_called_identical(tmp_path: Path) -> None:
    shape = Shape("2026-11-20", Shape.market(200), "12:00", "13:00", bursts=6, speed=1.0)
    rows = remember(tmp_path / "results.json", shape, [_result(1)], "2026-12-05", "test machine")
    table = markdown(shape, rows)
    assert "byte-identical" not in table
    assert "one N compared so far" in table
    rows = remember(tmp_path / "results.json", shape, [_result(2)], "2026-12-06", "test machine")
    assert "byte-identical for every N" in markdown(shape, rows)


def test_each_run_says_what_its_venue_dropped_and_what_its_workers_left_out(tmp_path: Path) -> None:
    log = tmp_path / "ingest.log"
    log.write_text(
        '{"level": "WARNING", "message": "new Polygon connection 2: gaps will be repaired from REST"}\n'
        "ingest: 14370603 events; published trades=2868527 quotes=11493401 bars=12000 options=0; 6111 duplicates "
        "dropped, 0 dead letters, 3708 gaps (2 unrepaired, 5690 events recovered), 8 connections\n"
    )
    assert venue_counts(log) == {"gaps": 3708, "unrepaired": 2, "recovered": 5690, "connections": 8}
    assert venue_counts(tmp_path / "missing.log") == {}
    shape = Shape("2026-11-20", Shape.market(200), "12:00", "13:00", bursts=6, speed=1.0)
    path = tmp_path / "results.json"
    remember(path, shape, [_result(1)], "2026-12-05", "test machine")  # a row recorded before the counts were kept
    counted = _result(2)
    counted.venue = venue_counts(log)
    counted.not_applied = {"late": 3.0, "redelivered": 0.0, "outside_session": 12.0}
    table = markdown(shape, remember(path, shape, [counted], "2026-12-06", "test machine"))
    assert "- N=1: not counted" in table
    counted.venue = {**counted.venue, "connections": 1}
    assert "- N=2: 1 WebSocket connection, 3,708 gaps" in markdown(
        shape, remember(path, shape, [counted], "2026-12-06", "m")
    )
    assert (
        "- N=2: 8 WebSocket connections, 3,708 gaps, 5,690 events recovered from REST, 2 unrepaired; "
        "inputs the streams workers did not apply: late 3, outside_session 12"
    ) in table


def test_outputs_are_hashed_without_the_commit_stamp_and_old_raw_rows_are_not_compared(tmp_path: Path) -> None:
    stamps: set[str] = set()
    record = {"source_commit": "abc", "x": 1.5, "nested": [{"source_commit": "def", "y": b"\x01"}]}
    assert _unstamped(record, stamps) == {"x": 1.5, "nested": [{"y": "01"}]}
    assert stamps == {"abc", "def"}
    shape = Shape("2026-11-20", Shape.market(200), "12:00", "13:00", bursts=6, speed=1.0)
    path = tmp_path / "results.json"
    remember(path, shape, [_result(1)], "2026-12-05", "test machine")
    stored = json.loads(path.read_text())
    for row in stored[shape.key()].values():  # as a row recorded before the digests left the stamp out
        del row["digest_kind"]
        del row["stamps"]
    path.write_text(json.dumps(stored))
    second = _result(2)
    second.stamps = ["0123456789abcdef"]
    table = markdown(shape, remember(path, shape, [second], "2026-12-06", "test machine"))
    assert "Not compared: N=1 hashed the raw values" in table
    assert "NOT identical" not in table
    assert "one N compared so far" in table
    differing = _result(3, "xyz")  # the rows hashed without the stamp are compared, whatever a raw row says
    table = markdown(shape, remember(path, shape, [differing], "2026-12-06", "test machine"))
    assert "Not compared: N=1" in table
    assert "Outputs: NOT identical across N (N=2, N=3):" in table
    assert "- features: N=2: 5 records, sha256 abc; N=3: 5 records, sha256 xyz" in table
    assert "records differ for" not in table  # N=2 kept no per-symbol hashes
    path.write_text(
        json.dumps({k: {n: r for n, r in v.items() if n != "3"} for k, v in json.loads(path.read_text()).items()})
    )
    third = _result(1)
    third.stamps = ["fedcba9876543210"]
    table = markdown(shape, remember(path, shape, [third], "2026-12-07", "test machine"))  # N=1 re-run
    assert "byte-identical for every N compared" in table
    assert "Not compared" not in table
    assert "N=1 fedcba987654; N=2 0123456789ab" in table


def test_runs_that_differ_name_the_symbols_whose_records_differ(tmp_path: Path) -> None:
    shape = Shape("2026-11-20", Shape.market(200), "12:00", "13:00", bursts=6, speed=1.0)
    one, two = _result(1, "abc"), _result(2, "abd")
    one.by_symbol = {"features": {"SPY": "1", "QQQ": "2", "IWM": "3"}}
    two.by_symbol = {"features": {"SPY": "1", "QQQ": "9", "DIA": "4"}}  # QQQ differs, IWM and DIA only in one
    rows = remember(tmp_path / "results.json", shape, [one, two], "2026-12-06", "test machine")
    assert rows[0].by_symbol == one.by_symbol  # kept with the row
    table = markdown(shape, rows)
    assert "records differ for 3 symbols: DIA, IWM, QQQ" in table


def test_each_row_keeps_its_machine_and_the_table_names_each_when_they_differ(tmp_path: Path) -> None:
    shape = Shape("2026-11-20", Shape.market(200), "12:00", "13:00", bursts=6, speed=1.0)
    path = tmp_path / "results.json"
    remember(path, shape, [_result(1)], "2026-12-05", "vm: AMD EPYC; CPU probe 318 ms")
    stored = json.loads(path.read_text())
    for row in stored[shape.key()].values():
        del row["machine"]  # a row recorded before the bench kept the machine
    path.write_text(json.dumps(stored))
    rows = remember(path, shape, [_result(2), _result(3)], "2026-12-06", "vm: Intel Xeon; CPU probe 164 ms")
    assert [r.machine for r in rows] == ["", "vm: Intel Xeon; CPU probe 164 ms", "vm: Intel Xeon; CPU probe 164 ms"]
    table = markdown(shape, rows)
    assert "Machines (" in table
    assert "N=1: not kept (recorded before the bench kept it); N=2, 3: vm: Intel Xeon; CPU probe 164 ms." in table
    rows = remember(path, shape, [_result(1)], "2026-12-07", "vm: Intel Xeon; CPU probe 164 ms")  # N=1 again
    table = markdown(shape, rows)
    assert "Machine: vm: Intel Xeon; CPU probe 164 ms. Every process" in table
    assert "not kept" not in table
