"""The COPY wire form of event times (sinks/rows.py)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from sinks.rows import PG_EPOCH_US, _pg_micros, ns_to_datetime

PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


# datetime's range (years 1..9999) in nanoseconds since 1970
@given(st.integers(min_value=-62_135_596_800 * 10**9, max_value=253_402_300_799 * 10**9))
def test_pg_micros_is_the_floored_datetime_as_microseconds_since_2000(ns: int) -> None:
    assert _pg_micros(ns) == (ns_to_datetime(ns) - PG_EPOCH) // dt.timedelta(microseconds=1)


def test_pg_micros_known_values() -> None:
    assert int(PG_EPOCH.timestamp()) * 1_000_000 == PG_EPOCH_US
    assert _pg_micros(946_684_800_000_000_000) == 0  # 2000-01-01 itself
    assert _pg_micros(946_684_800_000_000_999) == 0  # sub-microsecond part floored
    assert _pg_micros(946_684_799_999_999_999) == -1  # just before 2000: floor, not truncation
    assert _pg_micros(None) is None
