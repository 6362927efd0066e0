"""The ingest hot path (IngestPipeline._events: T and Q events encoded from their own keys) against the
long way (_event: parse into a record, then encode): same bytes, same keys and timestamps, same dead
letters with the same reasons, same counts and de-duplication state, for any mix of events."""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from connectors.polygon.ingest import IngestPipeline
from connectors.polygon.parsing import IngestClock
from connectors.polygon.settings import PolygonSettings
from kafkaio.settings import KafkaSettings
from schemas.catalog import catalog
from schemas.serde import AvroSerde
from tests.fakes import InMemoryRegistry

SERDE = AvroSerde(InMemoryRegistry(), KafkaSettings(), catalog())
RECEIPT_NS = 1_700_000_000_123_456_789  # events span 100 s from here: the later ones are past the venue clock


class RecordingProducer:
    """What the pipeline calls on an AvroProducer, recorded instead of sent to Kafka."""

    def __init__(self) -> None:
        self.serde = SERDE
        self.sent: list[tuple[str, bytes, bytes, int]] = []
        self.dead: list[tuple[str, bytes, str]] = []

    def physical(self, topic: str) -> str:
        return topic

    def raw_produce(self) -> Any:
        def produce(topic: str, value: bytes, key: bytes, *, timestamp: int) -> None:
            self.send(topic, value, key, timestamp)

        return produce

    def send(self, topic: str, value: bytes, key: bytes, timestamp_ms: int, headers: Any = None) -> int:
        self.sent.append((topic, value, key, timestamp_ms))
        return len(self.sent)

    def produce(self, topic: str, record: dict[str, Any]) -> int:
        return self.produce_encoded(topic, record, self.serde.encode(topic, record))

    def produce_encoded(self, topic: str, record: dict[str, Any], value: bytes) -> int:
        return self.send(topic, value, self.serde.key(topic, record), record["ts"] // 1_000_000)

    def produce_dlq(self, topic: str, raw: bytes, reason: str, key: Any = None, **_: Any) -> int:
        self.dead.append((topic, raw, reason))
        return 0


def pipeline(clock: IngestClock | None = None, gap_s: float = 0) -> tuple[IngestPipeline, RecordingProducer]:
    polygon = PolygonSettings(api_key=SecretStr("k"), trade_gap_s=gap_s, quote_gap_s=gap_s, warm_start_events=0)
    producer = RecordingProducer()
    return IngestPipeline(polygon, ["SPY", "QQQ"], producer, clock=clock), producer  # type: ignore[arg-type]


ms = st.integers(min_value=1_700_000_000_000, max_value=1_700_000_100_000)
trade = st.fixed_dictionaries(
    {
        "ev": st.just("T"),
        "sym": st.sampled_from(["SPY", "QQQ"]),
        "i": st.sampled_from(["1", "2", "3", "40", "52983525029461"]),
        "x": st.integers(1, 4),
        "p": st.floats(min_value=1, max_value=1000, allow_nan=False),
        "s": st.integers(1, 5000),
        "t": ms,
        "q": st.integers(0, 50),
    },
    optional={"c": st.lists(st.integers(0, 60), max_size=3), "z": st.integers(1, 3), "trfi": st.integers(0, 9)},
)
quote = st.fixed_dictionaries(
    {
        "ev": st.just("Q"),
        "sym": st.sampled_from(["SPY", "QQQ"]),
        "bx": st.integers(1, 30),
        "bp": st.floats(min_value=1, max_value=1000, allow_nan=False),
        "bs": st.integers(0, 10_000),
        "ax": st.integers(1, 30),
        "ap": st.floats(min_value=1, max_value=1000, allow_nan=False),
        "as": st.integers(0, 10_000),
        "t": ms,
        "q": st.integers(0, 50),
    },
    optional={"c": st.one_of(st.integers(0, 9), st.lists(st.integers(0, 9), max_size=2)), "z": st.integers(1, 3)},
)
odd_values = st.sampled_from([None, "x", 1.5, 2.0, -1, 2**63, [], [1, "a"], {"a": 1}, True])  # JSON can hold


@st.composite
def spoiled(draw: st.DrawFn, events: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """An event with one field removed or given a value of another kind (or an unsubscribed symbol)."""
    event = dict(draw(events))
    field = draw(st.sampled_from(sorted(event)))
    if draw(st.booleans()):
        del event[field]
    else:
        event[field] = draw(odd_values if field != "sym" else st.sampled_from(["IWM", 5, None]))
    return event


events = st.lists(
    st.one_of(
        trade,
        quote,
        spoiled(trade),
        spoiled(quote),
        st.just({"ev": "status", "status": "success", "message": "ok"}),
        st.just({"ev": "XQ", "sym": "SPY"}),
        st.just(["not", "an", "event"]),
    ),
    max_size=40,
)


def run_both(
    batch: list[Any],
    clock: IngestClock | None = None,
    pending: dict[tuple[str, str], tuple[int, str]] | None = None,
    gap_s: float = 0,
) -> tuple[RecordingProducer, RecordingProducer]:
    fast, fast_out = pipeline(clock, gap_s)
    slow, slow_out = pipeline(clock, gap_s)
    repairs: dict[str, list[tuple[Any, ...]]] = {"fast": [], "slow": []}
    for name, one in (("fast", fast), ("slow", slow)):
        one.pending.update(pending or {})
        # as _frame sets it: events over a minute past the receipt time (live clock) are outliers
        one._horizon = one.venue.horizon(RECEIPT_NS)
        # gap repair fetches from REST; here each fetch is noted (and recovers nothing)
        one._fetch = lambda *args, _calls=repairs[name]: _calls.append(args) or ([], None)  # type: ignore[method-assign]
    batch = orjson.loads(orjson.dumps(batch))  # as events arrive
    fast._events(copy.deepcopy(batch), RECEIPT_NS)
    for event in copy.deepcopy(batch):
        slow._event(event, RECEIPT_NS)
    assert fast_out.sent == slow_out.sent
    assert fast_out.dead == slow_out.dead
    assert fast.stats == slow.stats
    assert fast.last_price == slow.last_price
    for where, track in slow.index.tracks.items():
        mirror = fast.index.tracks[where]
        assert (mirror.keys, mirror.last_ts, mirror.last_seq) == (track.keys, track.last_ts, track.last_seq)
    assert fast.index.tracks.keys() == slow.index.tracks.keys()
    assert repairs["fast"] == repairs["slow"]
    assert fast.pending == slow.pending
    assert fast.venue.venue_ns == slow.venue.venue_ns
    return fast_out, slow_out


@settings(max_examples=300, deadline=None)
@given(events)
def test_hot_path_matches_the_long_way(batch: list[Any]) -> None:
    run_both(batch)


@settings(max_examples=50, deadline=None)
@given(events)
def test_hot_path_matches_the_long_way_on_a_simulated_clock(batch: list[Any]) -> None:
    run_both(batch, IngestClock(simulated_latency_ns=1_500_000))


@settings(max_examples=100, deadline=None)
@given(
    events,
    st.dictionaries(
        st.tuples(st.sampled_from(["market_trades", "market_quotes", "bars_1m"]), st.sampled_from(["SPY", "QQQ"])),
        st.tuples(st.integers(1_699_999_999_000_000_000, 1_700_000_050_000_000_000), st.just("reconnect")),
    ),
)
def test_hot_path_leaves_gaps_pending_repair_to_the_long_way(
    batch: list[Any], pending: dict[tuple[str, str], tuple[int, str]]
) -> None:
    run_both(batch, pending=pending)


@settings(max_examples=100, deadline=None)
@given(events, st.sampled_from([0.001, 5.0, 40.0]))
def test_hot_path_leaves_time_gaps_to_the_long_way(batch: list[Any], gap_s: float) -> None:
    run_both(batch, gap_s=gap_s)


def test_hot_path_publishes_what_the_long_way_does_and_leaves_bad_events_to_it() -> None:
    good_trade = {
        "ev": "T",
        "sym": "SPY",
        "i": "7",
        "x": 4,
        "p": 600.25,
        "s": 100,
        "c": [12],
        "t": 1_700_000_000_001,
        "q": 9,
    }
    good_quote = {
        "ev": "Q",
        "sym": "QQQ",
        "bx": 1,
        "bp": 500.0,
        "bs": 2,
        "ax": 3,
        "ap": 500.01,
        "as": 4,
        "c": 1,
        "t": 1_700_000_000_002,
        "q": 3,
    }
    bad_price = {**good_trade, "i": "8", "p": "cheap"}
    float_time = {**good_trade, "i": "9", "t": 1_700_000_000_003.0}
    future = {**good_trade, "i": "10", "t": 1_700_000_000_003 + 10 * 365 * 86_400_000}
    fast_out, _ = run_both([good_trade, good_quote, dict(good_trade), bad_price, float_time, future])
    topics = [topic for topic, *_ in fast_out.sent]
    # the duplicate is dropped, the string price goes to the DLQ naming the field, and an integral float
    # time is accepted (the long way converts it); the quote's single condition code becomes a list
    assert topics == ["market_trades", "market_quotes", "market_trades"]
    assert [(topic, reason.split(":")[0]) for topic, _, reason in fast_out.dead] == [
        ("market_trades", "market_trades.price"),
        ("market_trades", "T.t"),  # ten years ahead of the venue clock
    ]
    assert orjson.loads(fast_out.dead[0][1]) == bad_price  # the raw event, without the hot path's keys
    quote = SERDE.decode(fast_out.sent[1][1], "market_quotes")
    assert (quote["conditions"], quote["source"]) == ([1], "ws")
    assert fast_out.sent[0][2:] == (b"SPY", 1_700_000_000_001)


def test_ordinary_events_take_the_hot_path() -> None:
    """The comparisons above would also pass if everything went the long way: check that it does not."""
    fast, out = pipeline()
    long_way: list[Any] = []
    original = fast._event

    def noted(event: Any, receipt_ns: int) -> None:
        long_way.append(event)
        original(event, receipt_ns)

    fast._event = noted  # type: ignore[method-assign]
    trade = {"ev": "T", "sym": "SPY", "i": "1", "x": 4, "p": 600.0, "s": 10, "t": 1_700_000_000_001, "q": 1}
    quote = {
        "ev": "Q",
        "sym": "QQQ",
        "bx": 1,
        "bp": 1.0,
        "bs": 1,
        "ax": 1,
        "ap": 1.1,
        "as": 1,
        "t": 1_700_000_000_002,
        "q": 2,
    }
    bar = {
        "ev": "AM",
        "sym": "SPY",
        "v": 1,
        "o": 1,
        "h": 1,
        "l": 1,
        "c": 1,
        "s": 1_700_000_000_000,
        "e": 1_700_000_060_000,
    }
    fast._events([trade, quote, dict(trade, i="2"), bar], 1_700_000_000_100_000_000)
    assert [event["ev"] for event in long_way] == ["AM"]
    assert [topic for topic, *_ in out.sent] == ["market_trades", "market_quotes", "market_trades", "bars_1m"]
