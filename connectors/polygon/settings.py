"""Typed settings for the Polygon / Massive connector."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, SecretStr


class PolygonSettings(BaseModel):
    """Venue URLs are whole URLs; ws:// and http:// (local test servers) work as well as the secure ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: SecretStr | None = None
    ws_url: str = "wss://socket.massive.com/stocks"
    rest_url: str = "https://api.massive.com"
    symbols: tuple[str, ...] = ("SPY", "QQQ")
    rest_timeout_s: float = Field(default=30.0, gt=0)
    rest_retries: int = Field(default=8, ge=0)
    rest_page_limit: int = Field(default=50_000, gt=0, le=50_000)
    repair_deadline_s: float = Field(default=120.0, gt=0)
    # reconnect backoff (jittered exponential), forever
    reconnect_base_s: float = Field(default=0.5, gt=0)
    reconnect_cap_s: float = Field(default=30.0, gt=0)
    # time discontinuities that trigger a REST check (0 disables); bars are not checked (missing
    # minute bars are minutes without eligible trades)
    trade_gap_s: float = Field(default=300.0, ge=0)
    quote_gap_s: float = Field(default=120.0, ge=0)
    # published keys are remembered for de-duplication at least this long (event time), at most about twice
    # (two generations, connectors/polygon/dedupe.py)
    dedupe_window_s: float = Field(default=900.0, gt=0)
    # an event stamped more than this ahead of the venue clock (the latest event time the stream has shown,
    # and, live, the receipt time) is dead-lettered: a far-future stamp would move the de-duplication
    # generations (and every later gap check) into the future
    max_event_ahead_s: float = Field(default=60.0, gt=0)
    # events read back from Kafka per partition at start (dedupe + gap check across restarts)
    warm_start_events: int = Field(default=50_000, ge=0)
    # options chain snapshots (with --options)
    options_interval_s: float = Field(default=30.0, gt=0)
    # `scalp ingest`: /healthz (and /metrics) on this port (0: none); healthy once connected, while events
    # keep arriving within stale_after_s (a quiet market outside the session is not a failure: see the detail)
    http_port: int = Field(default=9467, ge=0)
    http_host: str = "127.0.0.1"
    # `scalp ingest`: the collector's thresholds (generations 0-2) once start-up and the warm start are frozen
    # out of its reach; Python's 700/10/10 cost the bench 5-10% (docs/ingest.md). A full collection runs every
    # gc_full_interval_s instead (0: only when the thresholds call for one)
    gc_thresholds: tuple[PositiveInt, PositiveInt, PositiveInt] = (5000, 50, 1000)
    gc_full_interval_s: float = Field(default=300.0, ge=0)
    options_expiries: tuple[str, ...] = ("0dte", "next")
    options_strike_window_pct: float = Field(default=2.0, gt=0)
