"""Typed settings of the order router (`scalp execute`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PaperSettings(BaseModel):
    """The paper broker's rules (execution/paper.py). Kept out of the broker's module: that one is compiled
    in the compiled build, and a pydantic model is not."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ms: float = Field(default=50.0, ge=0)
    lot_size: int = Field(default=100, ge=1)  # shares per unit of quote size
    start_cash_usd: float = Field(default=100_000.0, gt=0)
    account_id: str = "PAPER"


class FeeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    per_share_usd: float = Field(default=0.0, ge=0)
    per_contract_usd: float = Field(default=0.35, ge=0)
    per_order_usd: float = Field(default=0.0, ge=0)


class LimitSettings(BaseModel):
    """Pre-trade limits, checked before every entry is sent (execution/guard.py). Conservative defaults: a
    limit that refuses is a record with its reason; one that is too loose is money."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_order_qty: int = Field(default=500, ge=1)  # shares or contracts per order
    max_order_notional_usd: float = Field(default=100_000.0, gt=0)  # qty x entry limit (x 100 for options)
    max_orders_per_day: int = Field(default=20, ge=1)  # entries sent per account per trading day (US/Eastern)
    max_open_positions: int = Field(default=2, ge=1)  # trades with a working or filled entry, not yet closed
    allowed_symbols: tuple[str, ...] = ("SPY", "QQQ")  # underlyings; options must be OCC symbols on them
    max_intent_age_s: float = Field(default=10.0, gt=0)  # an intent older than this at the router is refused
    max_submits_per_s: int = Field(default=2, ge=1)  # entries sent in any one second
    # end-of-day flatten this many minutes before the close (13:00 ET on half days); 0 turns it off. From
    # the cutoff on, entries are refused and open trades are closed like a time stop (exit_reason eod).
    eod_flatten_minutes: float = Field(default=5.0, ge=0)


class ExecutionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fees: FeeSettings = Field(default_factory=FeeSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    paper: PaperSettings = Field(default_factory=PaperSettings)
    poll_interval_s: float = Field(default=2.0, gt=0)  # the /orders backstop while orders are open
    snapshot_interval_s: float = Field(default=60.0, gt=0)  # account_snapshot cadence
    # paper: quotes are held this long (event time) behind the newest quote, so an intent that arrives a
    # little after the quotes that follow it is still applied in event-time order
    quote_hold_ms: int = Field(default=2000, ge=0)
    audit_queue: int = Field(default=10_000, ge=1)
    audit_spill_file: str = "execution-audit-spill.jsonl"  # under logging.dir (or the state dir)
    # one router per account: a PostgreSQL advisory lock held on a live connection; TCP keepalives make the
    # server drop a vanished holder's connection (and its lock) within about idle + interval x count seconds
    lease_keepalive_s: tuple[int, int, int] = (10, 5, 3)  # idle, interval, count
    lease_check_s: float = Field(default=2.0, gt=0)  # how often the router checks it still holds its lease
    # /healthz (and /metrics) on this port (0: none): healthy while the router's loop turns (within 15 s)
    http_port: int = Field(default=9466, ge=0)
    http_host: str = "127.0.0.1"
