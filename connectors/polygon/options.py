"""Options chain snapshots, polled on event-time boundaries for configured expiries and a strike window.

Polling on event time (every ``options_interval_s`` of venue time) keeps live and replayed sessions
alike. ``as_of`` asks the synthetic server for the chain at the boundary (a parameter of our
Polygon-protocol server only; the real API ignores it and it is not sent there).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from kafkaio.errors import ConfigError, RetryableError

from . import parsing
from .rest import PolygonRest
from .settings import PolygonSettings

log = logging.getLogger(__name__)
ET = ZoneInfo("America/New_York")


def event_date(ts_ns: int) -> dt.date:
    """The US/Eastern calendar date of a venue timestamp."""
    return dt.datetime.fromtimestamp(ts_ns / 1e9, tz=ET).date()


@cache
def _next_session(day: dt.date) -> dt.date:
    import exchange_calendars as xcals

    calendar = xcals.get_calendar("XNYS")
    return calendar.date_to_session(day + dt.timedelta(days=1), direction="next").date()  # type: ignore[no-any-return]


def resolve_expiry(spec: str, today: dt.date) -> dt.date:
    """'0dte' -> today, 'next' -> the next trading day, or an ISO date."""
    if spec == "0dte":
        return today
    if spec == "next":
        return _next_session(today)
    try:
        return dt.date.fromisoformat(spec)
    except ValueError:
        raise ConfigError(f"polygon.options_expiries: {spec!r} is not 0dte, next or an ISO date") from None


class OptionsPoller:
    def __init__(
        self,
        settings: PolygonSettings,
        rest: PolygonRest,
        as_of: bool = False,
        dead_letter: Callable[[dict[str, Any], str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.dead_letter = dead_letter
        self.rest = rest
        self.as_of = as_of
        self.interval_ns = int(settings.options_interval_s * 1e9)
        self.next_ns: int | None = None
        self.last_ts: dict[str, int] = {}  # contract -> ts of the last published snapshot row
        self.polls = 0
        self.failures = 0

    def maybe_poll(self, ts_ns: int, prices: dict[str, float]) -> Sequence[dict[str, Any]]:
        """The rows of a poll when event time has crossed the next interval boundary, else nothing (called
        per event: nothing is the empty tuple, not a new list)."""
        if self.next_ns is None:
            self.next_ns = (ts_ns // self.interval_ns + 1) * self.interval_ns
            return ()
        if ts_ns < self.next_ns:
            return ()
        boundary = self.next_ns
        self.next_ns = (ts_ns // self.interval_ns + 1) * self.interval_ns
        return self.poll(boundary, prices)

    def poll(self, at_ns: int, prices: dict[str, float]) -> list[dict[str, Any]]:
        """Every changed contract row for each underlying with a known price."""
        self.polls += 1
        today = event_date(at_ns)
        out: list[dict[str, Any]] = []
        window = self.settings.options_strike_window_pct / 100
        for underlying, price in sorted(prices.items()):
            for spec in self.settings.options_expiries:
                params: dict[str, Any] = {
                    "expiration_date": resolve_expiry(spec, today).isoformat(),
                    "strike_price.gte": round(price * (1 - window), 2),
                    "strike_price.lte": round(price * (1 + window), 2),
                }
                if self.as_of:
                    params["as_of"] = at_ns
                try:
                    rows = list(self.rest.option_chain(underlying, params))
                except RetryableError as exc:
                    self.failures += 1
                    log.warning("options snapshot %s %s failed: %s", underlying, params["expiration_date"], exc)
                    continue
                for row in rows:
                    try:
                        record = parsing.option_snapshot(underlying, row, at_ns)
                    except parsing.ParseError as exc:
                        if self.dead_letter is not None:
                            self.dead_letter(row, str(exc))
                        continue
                    contract = record["contract_symbol"]
                    if self.last_ts.get(contract) == record["ts"]:
                        continue  # unchanged since the last poll
                    self.last_ts[contract] = record["ts"]
                    out.append(record)
        out.sort(key=lambda r: (r["ts"], r["contract_symbol"]))
        return out
