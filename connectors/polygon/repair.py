"""Gap repair: what REST returns for a gap of the WebSocket stream, and the ``ingest_gaps`` record of it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kafkaio.errors import RetryableError
from kafkaio.retry import Backoff, retry
from schemas.topics import BARS_1M, INGEST_GAPS, MARKET_QUOTES, MARKET_TRADES

from .rest import PolygonRest

if TYPE_CHECKING:
    from kafkaio.producer import AvroProducer

    from . import parsing
    from .dedupe import SeenIndex
    from .ingest import IngestStats
    from .settings import PolygonSettings

log = logging.getLogger("connectors.polygon.ingest")
KIND = {MARKET_TRADES: "trades", MARKET_QUOTES: "quotes", BARS_1M: "bars"}
MERGED = (MARKET_TRADES, MARKET_QUOTES)  # repaired all at once after a reconnect (GapRepair.repair_pending)


def fetch_gap(rest: PolygonRest, topic: str, symbol: str, from_ns: int, to_ns: int) -> list[dict[str, Any]]:
    """The records of ``topic`` for ``symbol`` in [from_ns, to_ns] from REST."""
    # WebSocket times are whole milliseconds: include the rest of the last millisecond
    to_inclusive = to_ns + 999_999
    if topic == MARKET_TRADES:
        rows = rest.trades(symbol, from_ns, to_inclusive)
    elif topic == MARKET_QUOTES:
        rows = rest.quotes(symbol, from_ns, to_inclusive)
    else:
        rows = rest.minute_bars(symbol, from_ns // 1_000_000, to_ns // 1_000_000)
    return list(rows)


def gap_record(
    symbol: str, kind: str, from_ns: int, to_ns: int, reason: str, recovered: int, error: str | None
) -> dict[str, Any]:
    """The ``ingest_gaps`` record of a gap (logged: an error when it could not be repaired)."""
    if error:
        log.error("gap %s %s [%d, %d] (%s) could not be repaired: %s", symbol, kind, from_ns, to_ns, reason, error)
    else:
        log.info("gap %s %s [%d, %d] (%s): %d events recovered", symbol, kind, from_ns, to_ns, reason, recovered)
    return {
        "id": f"{symbol}:{kind}:{from_ns}",
        "symbol": symbol,
        "kind": kind,
        "ts": from_ns,
        "ts_from": from_ns,
        "ts_to": to_ns,
        "reason": reason,
        "events_recovered": recovered,
        "status": "unrepaired" if error else "repaired",
        "error": error,
    }


class GapRepair:
    """The ingest pipeline's gap repair (connectors.polygon.ingest.IngestPipeline): what is pending after a
    reconnect or a restart, and the time discontinuities, repaired before the record that reveals them."""

    settings: PolygonSettings
    pending: dict[tuple[str, str], tuple[int, str]]
    index: SeenIndex
    rest: PolygonRest
    clock: parsing.IngestClock
    producer: AvroProducer
    stats: IngestStats
    wall_ns: Callable[[], int]
    _gap_thresholds: dict[str, int]
    _publish: Callable[[str, dict[str, Any], Any], bool]  # the pipeline's own: encode, de-duplicate, send

    def _before_publish(self, topic: str, symbol: str, record: dict[str, Any]) -> None:
        """Repair a pending gap (reconnect, restart) or a time discontinuity before this record.

        After a reconnect or a restart, the first trade or quote (any symbol) has every symbol's trade and
        quote gaps repaired before it (:meth:`repair_pending`); a minute bar gap, the symbol's next bar."""
        ts = record["ts"]
        if topic in MERGED and (topic, symbol) in self.pending:
            self.repair_pending(ts)
            self.pending.pop((topic, symbol), None)  # left only if its gap starts after this event: none yet
            return
        pending = self.pending.pop((topic, symbol), None)
        if pending is not None:
            from_ns, reason = pending
            if ts > from_ns:
                self.repair(topic, symbol, from_ns, ts, reason, record_always=True)
            return
        threshold = self._gap_thresholds[topic]
        track = self.index.tracks.get((topic, symbol))
        if threshold and track is not None and track.last_ts is not None and ts - track.last_ts > threshold:
            self.repair(topic, symbol, track.last_ts, ts, "time", record_always=False)

    def repair_pending(self, until_ns: int) -> None:
        """At the first trade or quote after a reconnect or a restart: every symbol's trade and quote gap up to
        that event's time, fetched from REST and published merged in event time, before the event.

        The streams worker waits for a quiet stream only until the stream's partition (every symbol on it)
        is its grace past (streams/core/merge.py), so a gap published later than that is late there. Repaired
        at each symbol's own first new event, a thin symbol's gap came minutes after the partition had moved
        on; repaired symbol by symbol, the second symbol's events came after the first's newer ones. One
        REST call per symbol and stream, before anything newer is published (minute bars are still
        repaired at the symbol's next bar: a bar of the current minute is not final)."""
        windows = sorted(
            (symbol, topic, from_ns, reason)
            for (topic, symbol), (from_ns, reason) in self.pending.items()
            if topic in MERGED and from_ns < until_ns
        )
        if not windows:
            return
        started = time.monotonic()
        fetched: list[tuple[str, str, int, str, list[dict[str, Any]], str | None]] = []
        merged: list[tuple[int, int, int, int, int]] = []
        for symbol, topic, from_ns, reason in windows:
            del self.pending[(topic, symbol)]
            rows, error = self._fetch(topic, symbol, from_ns, until_ns)
            index = len(fetched)
            fetched.append((topic, symbol, from_ns, reason, rows, error))
            rank = 0 if topic == MARKET_QUOTES else 1
            merged.extend((row["ts"], row.get("seq") or 0, rank, index, i) for i, row in enumerate(rows))
        merged.sort()
        recovered = [0] * len(fetched)
        for _, _, _, index, i in merged:
            topic, _, _, _, rows, _ = fetched[index]
            record = rows[i]
            self.clock.stamp(record, self.wall_ns())
            if self._publish(topic, record, record):
                recovered[index] += 1
        for (topic, symbol, from_ns, reason, _, error), count in zip(fetched, recovered, strict=True):
            self._record_gap(topic, symbol, from_ns, until_ns, reason, count, error, record_always=True)
        log.info(
            "%d trade and quote gaps up to %d repaired before the first new event: %d events in %.1f s",
            len(fetched), until_ns, sum(recovered), time.monotonic() - started,
        )  # fmt: skip

    def _fetch(self, topic: str, symbol: str, from_ns: int, to_ns: int) -> tuple[list[dict[str, Any]], str | None]:
        """The records of [from_ns, to_ns] from REST, retried until the repair deadline; ([], error) after."""
        kind = KIND[topic]
        try:
            rows = retry(
                lambda: fetch_gap(self.rest, topic, symbol, from_ns, to_ns),
                what=f"repair {kind} {symbol}",
                deadline_s=self.settings.repair_deadline_s,
                backoff=Backoff(0.5, 10.0),
                on_retry=lambda n, d, e: log.warning(
                    "repair %s %s: attempt %d failed (%s); retry in %.1fs", kind, symbol, n, e, d
                ),
            )
        except RetryableError as exc:
            return [], str(exc)
        return rows, None

    def _record_gap(
        self, topic: str, symbol: str, from_ns: int, to_ns: int, reason: str, recovered: int, error: str | None,
        record_always: bool,
    ) -> None:  # fmt: skip
        self.stats.repaired += recovered
        if record_always or recovered or error:
            self.stats.gaps += 1
            self.stats.unrepaired += 1 if error else 0
            self.producer.produce(
                INGEST_GAPS, gap_record(symbol, KIND[topic], from_ns, to_ns, reason, recovered, error)
            )

    def repair(self, topic: str, symbol: str, from_ns: int, to_ns: int, reason: str, record_always: bool) -> int:
        """Fetch [from_ns, to_ns] from REST and publish what was not published yet; record the gap."""
        rows, error = self._fetch(topic, symbol, from_ns, to_ns)
        recovered = 0
        for record in rows:
            self.clock.stamp(record, self.wall_ns())
            if self._publish(topic, record, record):
                recovered += 1
        self._record_gap(topic, symbol, from_ns, to_ns, reason, recovered, error, record_always)
        return recovered
