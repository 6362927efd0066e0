"""Trading sessions in US/Eastern from the NYSE exchange calendar (half-days and DST included).

pre 04:00 to the open, rth the open to the close (13:00 on half-days), post the close to 20:00 (US/Eastern).
Outside these (overnight, weekends, holidays) an event has no session. Lookups are cached per date, so the
per-event cost is two comparisons.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache
from zoneinfo import ZoneInfo

from .errors import PolicyError

ET = ZoneInfo("America/New_York")
NS = 1_000_000_000
PHASES = ("pre", "rth", "post")


def et_ns(day: dt.date, hour: int, minute: int = 0) -> int:
    return int(dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=ET).timestamp()) * NS


@dataclass(frozen=True, slots=True)
class SessionDay:
    date: dt.date
    pre_open_ns: int
    open_ns: int
    close_ns: int
    post_close_ns: int

    @property
    def half_day(self) -> bool:
        return self.close_ns - self.open_ns < 6 * 3600 * NS

    def phase(self, ts_ns: int) -> str | None:
        if ts_ns < self.pre_open_ns or ts_ns >= self.post_close_ns:
            return None
        if ts_ns < self.open_ns:
            return "pre"
        return "rth" if ts_ns < self.close_ns else "post"

    def start_of(self, phase: str) -> int:
        return {"pre": self.pre_open_ns, "rth": self.open_ns, "post": self.close_ns}[phase]

    def end_of(self, phase: str) -> int:
        return {"pre": self.open_ns, "rth": self.close_ns, "post": self.post_close_ns}[phase]


@cache
def _calendar():  # type: ignore[no-untyped-def]
    import exchange_calendars as xcals

    return xcals.get_calendar("XNYS")


class Calendar:
    """NYSE sessions by date; ``None`` for days the exchange is closed."""

    def __init__(self) -> None:
        self._days: dict[dt.date, SessionDay | None] = {}
        self._last: SessionDay | None = None

    def load(self) -> Calendar:
        """Load the exchange calendar now: importing exchange_calendars (pandas) and building XNYS takes 1-2 s,
        which a long-lived worker pays at start instead of stalling on its first event."""
        _calendar()
        return self

    def day(self, date: dt.date) -> SessionDay | None:
        if date not in self._days:
            calendar = _calendar()
            label = date.isoformat()
            if not (calendar.first_session.date() <= date <= calendar.last_session.date()):
                raise PolicyError(f"{date} is outside the exchange calendar's range")
            if not calendar.is_session(label):
                self._days[date] = None
            else:
                open_ns = int(calendar.session_open(label).value)
                close_ns = int(calendar.session_close(label).value)
                self._days[date] = SessionDay(date, et_ns(date, 4), open_ns, close_ns, et_ns(date, 20))
        return self._days[date]

    def at(self, ts_ns: int) -> tuple[SessionDay, str] | None:
        """(trading day, phase) of an event time, or None outside every session."""
        last = self._last
        if last is not None and last.pre_open_ns <= ts_ns < last.post_close_ns:
            phase = last.phase(ts_ns)
            return (last, phase) if phase else None
        date = dt.datetime.fromtimestamp(ts_ns / NS, ET).date()
        day = self.day(date)
        if day is None:
            return None
        self._last = day
        phase = day.phase(ts_ns)
        return (day, phase) if phase else None

    def previous_day(self, date: dt.date) -> SessionDay:
        """The last trading day before ``date``."""
        probe = date
        for _ in range(30):
            probe -= dt.timedelta(days=1)
            day = self.day(probe)
            if day is not None:
                return day
        raise PolicyError(f"no trading day in the 30 days before {date}")
