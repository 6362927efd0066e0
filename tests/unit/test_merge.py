"""The event-time merge with partition floors (streams/core/merge.py, SymbolStage): what a worker applies is
decided by its inputs alone, never by when it fetched them or when its timer ran.

A live worker reads a symbol's trades and quotes from two partitions, each shared with other symbols, in an
order that depends on fetch timing, and releases held events whenever its timer runs. The tests run one tape
through many such schedules and require the same outputs from each, including a symbol whose trades stop for
minutes (its quotes are released by the floors), an event of the same time as a released one arriving after
it, and an event that comes too late.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any

import orjson

from connectors.synthetic.records import session_records
from streams.core.digests import Digests
from streams.core.merge import QUOTE, TRADE, Late, Merger
from streams.core.pipeline import CoreParts, StrategyCore, SymbolStage
from streams.core.policy import load_policy
from tests.streams_util import loose_policy

MS = 1_000_000
GRACE_MS = 1000
SYMBOLS = ["SPY", "QQQ", "IWM", "DIA"]
QUIET = "IWM"  # its trades stop for minutes: its quotes are released by its partition's floor
LATE = "DIA"  # one of its trades comes again, minutes later: late


def _parts(tmp: Path) -> CoreParts:
    policy = load_policy(loose_policy(tmp))
    return CoreParts.create(policy, Digests("test", policy.digest, "test"))


def _tape(repeat: bool = True) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """Four partition queues (topic, partition) in publication order: symbols on partitions 0 and 1.
    ``repeat``: with LATE's trade sent again minutes later."""
    records = list(session_records(dt.date(2026, 11, 20), SYMBOLS, 7, "09:30", "09:50"))
    start = records[0][1]["ts"]
    queues: dict[tuple[str, int], list[dict[str, Any]]] = {}
    quiet_from, quiet_to = start + 4 * 60_000 * MS, start + 9 * 60_000 * MS
    late: dict[str, Any] | None = None
    sent = False
    for topic, record in records:
        kind = TRADE if topic == "market_trades" else QUOTE
        symbol = record["symbol"]
        if kind == TRADE and symbol == QUIET and quiet_from <= record["ts"] < quiet_to:
            continue
        queue = queues.setdefault((kind, SYMBOLS.index(symbol) % 2), [])
        queue.append(record)
        if kind == TRADE and symbol == LATE and late is None and record["ts"] > quiet_from:
            late = dict(record, seq=record["seq"] + 1)  # the venue sent it again, three minutes on
        again = late and record["ts"] > late["ts"] + 3 * 60_000 * MS
        if repeat and again and not sent and kind == TRADE and symbol == LATE:
            queue.append(late)
            sent = True
    # the first trade after the quiet stretch: at the time of the quote before it (an equal time, released
    # already by the floor in some schedules and not in others before this trade comes)
    trades = queues[(TRADE, SYMBOLS.index(QUIET) % 2)]
    quotes = queues[(QUOTE, SYMBOLS.index(QUIET) % 2)]
    first = next(i for i, r in enumerate(trades) if r["symbol"] == QUIET and r["ts"] >= quiet_to)
    before = max(q["ts"] for q in quotes if q["symbol"] == QUIET and q["ts"] <= trades[first]["ts"])
    trades[first] = dict(trades[first], ts=before)
    return queues


def _schedule(stage: SymbolStage, queues: dict[tuple[str, int], list[dict[str, Any]]], rng: random.Random) -> Any:
    """Push the queues in a random interleaving (each queue in order, in random batches), releasing at random
    points; the outputs per symbol, in the order they came."""
    position = dict.fromkeys(queues, 0)
    out: dict[str, list[bytes]] = {}

    def keep(outputs: list[tuple[str, dict[str, Any]]]) -> None:
        for topic, record in outputs:
            out.setdefault(record.get("symbol") or record["signal"]["symbol"], []).append(
                orjson.dumps([topic, record], option=orjson.OPT_SORT_KEYS)
            )

    while True:
        open_ = [k for k in queues if position[k] < len(queues[k])]
        if not open_:
            break
        key = rng.choice(open_)
        kind, partition = key
        topic = "market_trades" if kind == TRADE else "market_quotes"
        for _ in range(rng.randint(1, 400)):
            if position[key] == len(queues[key]):
                break
            keep(stage.push(kind, queues[key][position[key]], (topic, partition, position[key])))
            position[key] += 1
        if rng.random() < 0.4:
            keep(stage.release())
    keep(stage.drain())
    late = {s: c.late_events for s, c in stage.counters().items()}
    return out, late


def test_every_schedule_of_the_same_inputs_gives_the_same_outputs(tmp_path: Path) -> None:
    parts = _parts(tmp_path)
    queues = _tape()
    runs = []
    for seed in range(12):
        stage = SymbolStage(parts, GRACE_MS)
        runs.append(_schedule(stage, queues, random.Random(seed)))
        # every input is acknowledged, late ones included, each once
        applied = sorted((source[0], source[1], source[2]) for _, source in stage.applied)
        topics = {TRADE: "market_trades", QUOTE: "market_quotes"}
        assert applied == sorted((topics[k], p, i) for (k, p), q in queues.items() for i in range(len(q)))
    first_out, first_late = runs[0]
    assert first_late[LATE] == 1
    assert sum(first_late.values()) == 1
    assert sum(len(v) for v in first_out.values()) > 1000
    assert any(b'"signals"' in r for v in first_out.values() for r in v)
    for out, late in runs[1:]:
        assert late == first_late
        for symbol in SYMBOLS:
            assert out.get(symbol) == first_out.get(symbol), symbol


def test_without_late_inputs_the_outputs_are_those_of_the_sorted_replay(tmp_path: Path) -> None:
    """With a grace long enough for nothing to be late, a live schedule applies exactly what a replay of the
    records in event-time order does (the replay's order is the merge's: time, sequence, quote first)."""
    parts = _parts(tmp_path)
    queues = _tape(repeat=False)
    stage = SymbolStage(parts, 60 * 60_000)  # an hour: nothing is late, the quiet symbol waits for its trades
    live, late = _schedule(stage, queues, random.Random(99))
    assert sum(late.values()) == 0
    core = StrategyCore(parts)
    everything = sorted(
        ((k, r) for (k, _), q in queues.items() for r in q),
        key=lambda e: (e[1]["ts"], e[1]["seq"], 0 if e[0] == QUOTE else 1),
    )
    replay: dict[str, list[bytes]] = {}
    outputs = []
    for kind, record in everything:
        outputs += core.stage.push(kind, record)
    outputs += core.stage.drain()
    for topic, record in outputs:
        replay.setdefault(record.get("symbol") or record["signal"]["symbol"], []).append(
            orjson.dumps([topic, record], option=orjson.OPT_SORT_KEYS)
        )
    assert live == replay


def test_a_quiet_stream_is_waited_for_only_until_its_partition_is_the_grace_past() -> None:
    merger = Merger()
    assert merger.push(QUOTE, 100, 1, "q100")
    assert merger.push(QUOTE, 200, 2, "q200")
    assert merger.pop_ready() == []  # no trade yet
    assert merger.pop_ready(trades_floor=150) == [(QUOTE, "q100")]  # the trades' partition is at 150 + grace
    # a trade older than that floor cannot take its place any more: late, kept as a marker in its stream's order
    assert not merger.push(TRADE, 120, 3, "t120", floor=150)
    assert merger.push(TRADE, 150, 4, "t150", floor=150)  # at the floor: on time
    released = merger.pop_ready(trades_floor=300)
    assert released[1:] == [(TRADE, "t150")]  # q200 waits: the quotes have not passed 200
    assert released[0][0] == TRADE
    assert isinstance(released[0][1], Late)
    assert released[0][1].payload == "t120"
    # older than its own stream's newest: late too, whatever the floor
    assert not merger.push(QUOTE, 199, 5, "q199")
    rest = merger.pop_ready(quotes_floor=250)  # the marker after the event its stream brought before it
    assert rest[0] == (QUOTE, "q200")
    assert isinstance(rest[1][1], Late)
    assert rest[1][1].payload == "q199"
    assert len(rest) == 2
    assert len(merger) == 0
