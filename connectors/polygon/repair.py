"""Gap repair: what REST returns for a gap of the WebSocket stream, and the ``ingest_gaps`` record of it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kafkaio.errors import ConfigError, RetryableError
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
_REPAIRED_WITH = {MARKET_TRADES: MARKET_QUOTES, MARKET_QUOTES: MARKET_TRADES}  # see GapRepair._before_publish


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

        A symbol's trades and quotes are repaired together, at its first new event on either stream: the
        streams worker merges the two by event time and does not apply an event older than the newest it
        applied for the symbol, so a trade gap repaired only at the symbol's first new trade (minutes after
        the reconnect for a thin symbol, whose quotes go on meanwhile) would come too late to be applied."""
        ts = record["ts"]
        pending = self.pending.pop((topic, symbol), None)
        if pending is not None:
            other = _REPAIRED_WITH.get(topic, "")
            paired = self.pending.get((other, symbol))
            if paired is not None and ts > paired[0]:
                del self.pending[(other, symbol)]
                self.repair(other, symbol, paired[0], ts, paired[1], record_always=True)
            from_ns, reason = pending
            if ts > from_ns:
                self.repair(topic, symbol, from_ns, ts, reason, record_always=True)
            return
        threshold = self._gap_thresholds[topic]
        track = self.index.tracks.get((topic, symbol))
        if threshold and track is not None and track.last_ts is not None and ts - track.last_ts > threshold:
            self.repair(topic, symbol, track.last_ts, ts, "time", record_always=False)

    def repair(self, topic: str, symbol: str, from_ns: int, to_ns: int, reason: str, record_always: bool) -> int:
        """Fetch [from_ns, to_ns] from REST and publish what was not published yet; record the gap."""
        kind = KIND[topic]
        error: str | None = None
        recovered = 0
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
            error = str(exc)
            rows = []
        except ConfigError:
            raise
        for record in rows:
            self.clock.stamp(record, self.wall_ns())
            if self._publish(topic, record, record):
                recovered += 1
        self.stats.repaired += recovered
        if record_always or recovered or error:
            self.stats.gaps += 1
            self.stats.unrepaired += 1 if error else 0
            gap = gap_record(symbol, kind, from_ns, to_ns, reason, recovered, error)
            self.producer.produce(INGEST_GAPS, gap)
        return recovered
