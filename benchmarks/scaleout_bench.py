"""`scalp bench scaleout`: a synthetic session shaped like a whole market (hundreds of symbols, bursts of ten
times the activity) through `scalp ingest synthetic`, N `scalp streams` workers and N `scalp sink` workers,
for each N asked, each run on topics and a database of its own.

Measured per N: market events and the wall time from the first event published to the last row written
(events/s), tick-to-feature latency (the wall time the bench saw a feature in Kafka minus when it saw the
tick behind it; the ticks and features of one partition are watched), CPU per process (cores, from
``process_cpu_seconds_total``), the consumer lag of the workers (largest, and at the end), the venue's
WebSocket drops and the gaps REST repaired (from the summary `scalp ingest` prints), and the inputs the
streams workers did not apply, by reason (``scalp_streams_inputs_not_applied_total``). Checked per N:
every output topic holds the same records whatever N is (sha256 of the sorted records, decoded, without the
source_commit stamp that names the commit of the run), and every table holds exactly the distinct records of
its topic.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg
import yaml

from kafkaio.admin import TopicAdmin
from kafkaio.reader import RangeReader
from kafkaio.settings import KafkaSettings
from scalp.stack.procs import free_ports
from schemas.catalog import Catalog
from schemas.serde import AvroSerde
from schemas.topics import (
    CONFIG_SNAPSHOTS,
    FEATURES,
    MARKET_QUOTES,
    MARKET_TRADES,
    ORDER_INTENTS,
    RISK_DAY,
    RISK_DECISIONS,
    SIGNALS,
)

from .probes import LatencyWatch, Sampler
from .sink_bench import fresh_database

REPO = Path(__file__).resolve().parents[1]
OUTPUTS = (FEATURES, SIGNALS, RISK_DECISIONS, ORDER_INTENTS, RISK_DAY)
STAMP = "source_commit"  # the provenance field naming the commit that computed a record
RAW, UNSTAMPED = "raw", "unstamped"  # what a row's digests hash: the raw values, or the records without STAMP


@dataclass(frozen=True)
class Shape:
    date: str
    symbols: list[str]
    start: str
    end: str
    bursts: int
    speed: float | None  # None: as fast as ingest takes it
    seed: int = 1

    def key(self) -> str:
        """Names the session (runs of another N on the same key are rows of one table)."""
        pace = f"{self.speed:g}x" if self.speed else "max"
        symbols = len(self.symbols)
        return f"{self.date} {self.start}-{self.end} {symbols} symbols {self.bursts} bursts seed {self.seed} {pace}"

    @staticmethod
    def market(count: int) -> list[str]:
        """``count`` tickers (the synthetic venue makes up each one's price and activity)."""
        return [f"S{i:03d}" for i in range(count)]


@dataclass
class RunResult:
    n: int
    events: int = 0
    seconds: float = 0.0
    latency_ms: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # process kind -> cores (summed over its instances)
    max_lag: dict[str, float] = field(default_factory=dict)
    behind_s: float = 0.0  # longest stretch the streams workers were over 1,000 records behind
    end_lag: dict[str, float] = field(default_factory=dict)
    digests: dict[str, tuple[int, str]] = field(default_factory=dict)  # output topic -> (records, sha256)
    differences: dict[str, tuple[int, int]] = field(default_factory=dict)  # topic -> (distinct records, rows)
    venue: dict[str, int] = field(default_factory=dict)  # ingest's own count: connections, gaps, unrepaired, recovered
    not_applied: dict[str, float] = field(default_factory=dict)  # reason -> inputs the streams workers left out
    stamps: list[str] = field(default_factory=list)  # the source_commit values of the outputs
    by_symbol: dict[str, dict[str, str]] = field(default_factory=dict)  # topic -> symbol -> sha256[:16]

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def p(self, q: float) -> float | None:
        if not self.latency_ms:
            return None
        ordered = sorted(self.latency_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True)
class Summary:
    """What the table shows of a run (kept in the work folder, so each N of a long session can be run apart)."""

    n: int
    events: int
    seconds: float
    p50_ms: float | None
    p99_ms: float | None
    cpu: dict[str, float]
    max_lag: dict[str, float]
    behind_s: float
    end_lag: dict[str, float]
    digests: dict[str, tuple[int, str]]
    differences: dict[str, tuple[int, int]]
    recorded: str  # UTC date of the run
    venue: dict[str, int] = field(default_factory=dict)  # empty in rows recorded before the bench kept it
    not_applied: dict[str, float] = field(default_factory=dict)
    stamps: list[str] = field(default_factory=list)
    digest_kind: str = RAW  # rows recorded before 2026-12-06 hashed the raw values, commit stamp included
    by_symbol: dict[str, dict[str, str]] = field(default_factory=dict)  # where runs differ (kept since 2026-12-06)
    machine: str = ""  # the machine of the run and its CPU probe (empty in rows recorded before it was kept)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @classmethod
    def of(cls, r: RunResult, recorded: str, machine: str) -> Summary:
        return cls(r.n, r.events, r.seconds, r.p(0.5), r.p(0.99), r.cpu, r.max_lag, r.behind_s, r.end_lag,
                   r.digests, r.differences, recorded, r.venue, r.not_applied, r.stamps, UNSTAMPED,
                   r.by_symbol, machine)  # fmt: skip

    @classmethod
    def load(cls, raw: dict[str, Any]) -> Summary:
        raw = {**raw, "digests": {t: tuple(v) for t, v in raw["digests"].items()},
               "differences": {t: tuple(v) for t, v in raw["differences"].items()}}  # fmt: skip
        return cls(**raw)


def remember(path: Path, shape: Shape, results: list[RunResult], recorded: str, machine: str) -> list[Summary]:
    """This run's summaries (run on ``machine``) with those of earlier runs of the same session and other N
    (from ``path``, a JSON file updated in place), ordered by N."""
    stored: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.exists() else {}
    rows = stored.setdefault(shape.key(), {})
    for r in results:
        rows[str(r.n)] = asdict(Summary.of(r, recorded, machine))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stored, indent=1, sort_keys=True))
    return [Summary.load(rows[n]) for n in sorted(rows, key=int)]


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115 (the process owns it until it exits)
    return subprocess.Popen(
        [sys.executable, "-m", "scalp.cli", *args], env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT
    )


def _unstamped(value: Any, stamps: set[str]) -> Any:
    """``value`` without its ``source_commit`` stamps (collected into ``stamps``), at any depth."""
    if type(value) is dict:
        if STAMP in value:
            stamps.add(str(value[STAMP]))
        return {k: _unstamped(v, stamps) for k, v in value.items() if k != STAMP}
    if type(value) is list:
        return [_unstamped(v, stamps) for v in value]
    return value.hex() if type(value) is bytes else value


def _digests(
    kafka: KafkaSettings, serde: AvroSerde, dump: Path | None = None
) -> tuple[dict[str, tuple[int, str]], list[str], dict[str, dict[str, str]]]:
    """Per output topic (records, sha256 of the sorted records, decoded, without their ``source_commit``),
    the stamps seen, and per topic and symbol the first 16 hex digits of the same hash over the symbol's
    records (where two runs differ). A record names the commit that computed it: without the stamp, rows of N
    recorded at different commits compare equal when the code computed the same (runs of an hour are recorded
    apart). ``dump``: a folder for each topic's sorted records (gzip JSON lines), to diff two runs afterwards."""
    out: dict[str, tuple[int, str]] = {}
    by_symbol: dict[str, dict[str, str]] = {}
    stamps: set[str] = set()
    with RangeReader(kafka, f"bench-digest-{uuid.uuid4().hex[:6]}") as reader:
        for topic in OUTPUTS:
            physical = kafka.topic(topic)
            keyed = []
            for r in reader.read(physical, reader.bounds(physical)):
                record = _unstamped(serde.decode(r.value or b"", topic), stamps)
                keyed.append((orjson.dumps(record, option=orjson.OPT_SORT_KEYS), str(record.get("symbol", ""))))
            keyed.sort()
            lines = [line for line, _ in keyed]
            out[topic] = (len(lines), hashlib.sha256(b"\n".join(lines)).hexdigest())
            symbols: dict[str, Any] = {}
            for line, symbol in keyed:
                symbols.setdefault(symbol, hashlib.sha256()).update(line + b"\n")
            by_symbol[topic] = {symbol: h.hexdigest()[:16] for symbol, h in sorted(symbols.items())}
            if dump is not None:
                dump.mkdir(parents=True, exist_ok=True)
                with gzip.open(dump / f"{topic}.jsonl.gz", "wb", compresslevel=1) as f:
                    f.write(b"\n".join(lines))
    return out, sorted(stamps), by_symbol


def _tables_equal_topics(kafka: KafkaSettings, catalog: Catalog, url: str) -> dict[str, tuple[int, int]]:
    """Tables whose row count is not the number of distinct records of their topic (a record published twice,
    after a retry, has the same bytes; config snapshots count once per digest, the table keeps the first):
    topic -> (distinct records, rows). Hashes of the raw values, so an
    hour-long session of tens of millions of records fits in memory."""
    differences = {}
    with psycopg.connect(url) as conn, RangeReader(kafka, f"bench-tables-{uuid.uuid4().hex[:6]}") as reader:
        for spec in catalog:
            rows = conn.execute(f"SELECT count(*) FROM {spec.name}").fetchone()[0]  # type: ignore[index]  # noqa: S608
            physical = kafka.topic(spec.name)
            records = reader.read(physical, reader.bounds(physical))
            if spec.name == CONFIG_SNAPSHOTS:  # one row per digest; each worker may publish the same digest
                distinct = len({r.key for r in records if r.value is not None})
            else:
                distinct = len({hash(r.value) for r in records if r.value is not None})
            if rows != distinct:
                differences[spec.name] = (distinct, rows)
    return differences


def run_one(
    kafka: KafkaSettings, serde_for: Any, catalog: Catalog, dsn: str, shape: Shape, n: int, work: Path
) -> RunResult:
    """One run with ``n`` streams workers and ``n`` sinks on topics and a database of its own."""
    prefix = f"scale{uuid.uuid4().hex[:6]}n{n}_"
    kafka = kafka.model_copy(update={"topic_prefix": prefix})
    serde = serde_for(kafka)
    TopicAdmin(kafka, catalog).create_all()
    result = RunResult(n)
    work.mkdir(parents=True, exist_ok=True)
    config = work / f"pipeline-{prefix}.yaml"
    config.write_text(yaml.safe_dump({"sink": {"group_id": f"sink-{prefix}"}}))
    with fresh_database(dsn) as url:
        base = {**os.environ, "SCALP_TOPIC_PREFIX": prefix, "DATABASE_URL": url, "SCALP_MIN_RETENTION_MS": "-1",
                "SCALP_LOG_DIR": str(work / "logs")}  # fmt: skip
        ports = dict(zip([f"streams-{i}" for i in range(n)] + [f"sink-{i}" for i in range(n)] + ["ingest"],
                         free_ports(2 * n + 1), strict=True))  # fmt: skip
        procs: dict[str, subprocess.Popen[bytes]] = {}
        common = ["--config", str(config), "--log-level", "WARNING"]
        try:
            for i in range(n):
                env = {**base, "SCALP_STATE_DIR": str(work / f"{prefix}state-{i}")}
                procs[f"streams-{i}"] = _spawn([*common, "streams", "--metrics-port", str(ports[f"streams-{i}"])],
                                               env, work / f"{prefix}streams-{i}.log")  # fmt: skip
                procs[f"sink-{i}"] = _spawn([*common, "sink", "--metrics-port", str(ports[f"sink-{i}"])],
                                            env, work / f"{prefix}sink-{i}.log")  # fmt: skip
            time.sleep(8)  # the workers join their groups before the session starts
            pace = ["--speed", str(shape.speed)] if shape.speed else ["--max"]
            ingest = _spawn([*common, "ingest", "synthetic", "--date", shape.date, "--symbols", ",".join(shape.symbols),
                             "--start", shape.start, "--end", shape.end, "--bursts", str(shape.bursts),
                             "--seed", str(shape.seed), "--metrics-port", str(ports["ingest"]), *pace],
                            base, work / f"{prefix}ingest.log")  # fmt: skip
            with Sampler(ports) as sampler, LatencyWatch(kafka, serde) as watch:
                while (code := ingest.poll()) is None:  # a worker that dies ends the run now, not an hour later
                    _alive(procs, work / prefix)
                    time.sleep(1)
                if code != 0:
                    raise RuntimeError(f"ingest exited {code}; see {work / f'{prefix}ingest.log'}")
                total_events = _market_records(kafka)
                done = _wait_drained(sampler, procs, n, total_events, work / prefix)
            result.events = total_events
            result.seconds = done - (sampler.first_event or done)
            result.latency_ms = watch.latency_ms
            for name, cores_s in sampler.cpu.items():
                kind = name.split("-")[0]
                result.cpu[kind] = result.cpu.get(kind, 0.0) + cores_s
            for name, lag in sampler.max_lag.items():
                kind = name.split("-")[0]
                result.max_lag[kind] = max(result.max_lag.get(kind, 0.0), lag)
            result.end_lag = {k.split("-")[0]: v for k, v in sampler.lag.items()}
            result.behind_s = sampler.longest_behind()
            for reasons in sampler.not_applied.values():
                for reason, count in reasons.items():
                    result.not_applied[reason] = result.not_applied.get(reason, 0.0) + count
            result.venue = venue_counts(work / f"{prefix}ingest.log")
        finally:
            for proc in procs.values():
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
        wall = result.seconds or 1.0
        result.cpu = {kind: seconds / wall for kind, seconds in result.cpu.items()}
        result.digests, result.stamps, result.by_symbol = _digests(kafka, serde, work / f"{prefix}outputs")
        result.differences = _tables_equal_topics(kafka, catalog, url)
    TopicAdmin(kafka, catalog).delete_prefixed(prefix)  # an hour-long session's topics hold gigabytes
    return result


_INGEST_SUMMARY = re.compile(
    r"^ingest: .* (?P<gaps>\d+) gaps \((?P<unrepaired>\d+) unrepaired, (?P<recovered>\d+) events recovered\), "
    r"(?P<connections>\d+) connections$"
)


def venue_counts(log: Path) -> dict[str, int]:
    """WebSocket connections, gaps, unrepaired gaps and events recovered from REST, from the summary line
    `scalp ingest` prints when it ends (its metrics endpoint is gone by then and may have missed the last
    repairs); empty when the log has none."""
    found: dict[str, int] = {}
    with contextlib.suppress(FileNotFoundError), open(log, errors="replace") as lines:
        for line in lines:
            match = _INGEST_SUMMARY.match(line.rstrip("\n"))
            if match:
                found = {k: int(v) for k, v in match.groupdict().items()}
    return found


def _market_records(kafka: KafkaSettings) -> int:
    total = 0
    with RangeReader(kafka, "bench-count") as reader:
        for topic in (MARKET_TRADES, MARKET_QUOTES):
            physical = kafka.topic(topic)
            total += sum(
                high - low for low, high in (reader.watermarks(physical, p) for p in reader.partitions(physical))
            )
    return total


def _alive(procs: dict[str, subprocess.Popen[bytes]], logs: Path) -> None:
    for name, proc in procs.items():
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited {proc.returncode} before the session was drained; see {logs}{name}.log")


def _wait_drained(
    sampler: Sampler, procs: dict[str, subprocess.Popen[bytes]], n: int, events: int, logs: Path, quiet_s: float = 6
) -> float:
    """Until the streams workers took every market record and every worker reports no lag for ``quiet_s``;
    returns the time that state began."""
    since: float | None = None
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        _alive(procs, logs)
        sampler.poll()
        lags = [sampler.lag.get(f"{kind}-{i}") for kind in ("streams", "sink") for i in range(n)]
        taken = sum(v for k, v in sampler.events.items() if k.startswith("streams-"))
        if taken >= events and all(lag == 0 for lag in lags):
            since = since or time.monotonic()
            if time.monotonic() - since >= quiet_s:
                return since
        else:
            since = None
        time.sleep(0.5)
    raise RuntimeError("the workers did not drain the session within an hour")


def run(
    kafka: KafkaSettings,
    serde_for: Any,
    catalog: Catalog,
    dsn: str,
    shape: Shape,
    workers: list[int],
    work: Path,
    report: Any = print,
) -> list[RunResult]:
    results = []
    for n in workers:
        report(f"scale-out: {n} streams worker(s) and {n} sink(s), {len(shape.symbols)} symbols ...")
        result = run_one(kafka, serde_for, catalog, dsn, shape, n, work)
        report(f"  {result.events:,} events in {result.seconds:.1f} s: {result.rate:,.0f} events/s")
        results.append(result)
    return results


def identical(results: Sequence[RunResult | Summary]) -> dict[str, list[str]]:
    """Output topics whose records differ between the runs: topic -> one line per run (and the symbols whose
    records differ, where the runs kept per-symbol hashes)."""
    out = {}
    for topic in OUTPUTS:
        seen = {r.digests[topic] for r in results}
        if len(seen) > 1:
            out[topic] = [f"N={r.n}: {r.digests[topic][0]} records, sha256 {r.digests[topic][1][:16]}" for r in results]
            kept = [r.by_symbol[topic] for r in results if topic in r.by_symbol]
            if len(kept) == len(results):
                names = {symbol for hashes in kept for symbol in hashes}
                symbols = sorted(s for s in names if len({hashes.get(s) for hashes in kept}) > 1)
                more = f" and {len(symbols) - 12} more" if len(symbols) > 12 else ""
                out[topic].append(f"records differ for {len(symbols)} symbols: {', '.join(symbols[:12])}{more}")
    return out


def machines(results: list[Summary]) -> str:
    """The machine each row ran on: one when they all did, else each with its N (speeds compare only among rows
    of one machine; the outputs compare whatever the machine)."""
    by_machine: dict[str, list[int]] = {}
    for r in results:
        by_machine.setdefault(r.machine or "not kept (recorded before the bench kept it)", []).append(r.n)
    if len(by_machine) == 1:
        return f"Machine: {next(iter(by_machine))}."
    each = "; ".join(f"N={', '.join(map(str, ns))}: {m}" for m, ns in by_machine.items())
    return f"Machines (the rows' speeds compare only among rows of one machine, their outputs whatever it is): {each}."


def markdown(shape: Shape, results: list[Summary]) -> str:
    pace = f"{shape.speed:g}x real time" if shape.speed else "as fast as ingest publishes"
    lines = [
        "## Scale-out: one synthetic market session through N streams workers and N sinks (`scalp bench scaleout`)",
        "",
        f"{machines(results)} Every process of every run shares its 2 cores with Kafka, PostgreSQL (TimescaleDB) "
        "and the registry, so N workers on one machine compete for the same cores: the table shows what a "
        "second and third worker cost and whether the outputs stay the same, not the speed-up N machines give.",
        "",
        f"Session: {shape.date} {shape.start}-{shape.end} ET, {len(shape.symbols)} symbols, {shape.bursts} burst "
        f"minutes (ten times the activity), seed {shape.seed}, fed {pace}. Market topics have "
        "3 partitions (the catalog's default), so up to 3 workers of each kind share the load.",
        "",
        "| N | recorded | market events | seconds | events/s | tick to feature p50 / p99 ms "
        "| CPU cores: ingest / streams / sink | largest lag streams / sink | longest over 1,000 behind (s) "
        "| lag at the end |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        p50, p99 = r.p50_ms, r.p99_ms
        latency = "-" if p50 is None or p99 is None else f"{p50:,.0f} / {p99:,.0f}"
        cpu = " / ".join(f"{r.cpu.get(k, 0.0):.2f}" for k in ("ingest", "streams", "sink"))
        lag = f"{r.max_lag.get('streams', 0):,.0f} / {r.max_lag.get('sink', 0):,.0f}"
        end = f"{r.end_lag.get('streams', 0):,.0f} / {r.end_lag.get('sink', 0):,.0f}"
        lines.append(
            f"| {r.n} | {r.recorded} | {r.events:,} | {r.seconds:,.1f} | {r.rate:,.0f} | {latency} | {cpu} | {lag} "
            f"| {r.behind_s:,.0f} | {end} |"
        )
    lines.append("")
    lines += _outputs(results)
    lines += _inputs(results)
    bad = {r.n: r.differences for r in results if r.differences}
    lines.append(
        "Tables: every table holds exactly the distinct records of its topic, for every N."
        if not bad
        else f"Tables: rows differ from records: {bad}"
    )
    return "\n".join(lines)


def _outputs(results: list[Summary]) -> list[str]:
    """Whether the outputs were the same for every N: the rows hashed without the commit stamp are compared
    among themselves, whatever rows hashed the old way (with it) say."""
    raw = [r for r in results if r.digest_kind == RAW]
    rows = [r for r in results if r.digest_kind != RAW]
    lines = []
    if raw:
        lines.append(
            f"Not compared: {', '.join(f'N={r.n}' for r in raw)} hashed the raw values, which include the commit "
            "that computed them (rows recorded at different commits differ by it alone); rows recorded since hash "
            "the records without it. Re-run those N."
        )
    differing = identical(rows)
    if len({r.n for r in rows}) < 2:
        counts = ", ".join(f"{t} {rows[0].digests[t][0]:,}" for t in OUTPUTS) if rows else "-"
        lines.append(f"Outputs: {counts} (one N compared so far: the others are compared with it when they run).")
    elif differing:
        lines.append(f"Outputs: NOT identical across N ({', '.join(f'N={r.n}' for r in rows)}):")
        lines += [f"- {topic}: {'; '.join(each)}" for topic, each in differing.items()]
    else:
        counts = ", ".join(f"{t} {rows[0].digests[t][0]:,}" for t in OUTPUTS)
        stamps = "; ".join(f"N={r.n} {', '.join(c[:12] for c in r.stamps) or '-'}" for r in rows)
        lines.append(
            f"Outputs: byte-identical for every N compared ({counts}; sha256 per topic of the sorted records "
            f"without their source_commit stamp, which names the commit of each run: {stamps})."
        )
    return lines


def _inputs(results: list[Summary]) -> list[str]:
    """What each run's venue dropped and repaired, and what its workers left out: where an output difference
    between runs would come from."""
    lines = ["Inputs per run (the venue's drops fall at different moments in each run):"]
    for r in results:
        if not r.venue:
            lines.append(f"- N={r.n}: not counted (recorded before the bench kept these counts)")
            continue
        v = r.venue
        left = {k: int(c) for k, c in r.not_applied.items() if c}
        left_out = ", ".join(f"{k} {c:,}" for k, c in sorted(left.items())) or "none"
        sockets = f"{v['connections']} WebSocket connection{'' if v['connections'] == 1 else 's'}"
        lines.append(
            f"- N={r.n}: {sockets}, {v['gaps']:,} gaps, {v['recovered']:,} events "
            f"recovered from REST, {v['unrepaired']} unrepaired; inputs the streams workers did not apply: {left_out}"
        )
    return lines
