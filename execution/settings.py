"""Typed settings of the order router (`scalp execute`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from execution.paper import PaperSettings


class FeeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    per_share_usd: float = Field(default=0.0, ge=0)
    per_contract_usd: float = Field(default=0.35, ge=0)
    per_order_usd: float = Field(default=0.0, ge=0)


class ExecutionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fees: FeeSettings = Field(default_factory=FeeSettings)
    paper: PaperSettings = Field(default_factory=PaperSettings)
    poll_interval_s: float = Field(default=2.0, gt=0)  # the /orders backstop while orders are open
    snapshot_interval_s: float = Field(default=60.0, gt=0)  # account_snapshot cadence
    # paper: quotes are held this long (event time) behind the newest quote, so an intent that arrives a
    # little after the quotes that follow it is still applied in event-time order
    quote_hold_ms: int = Field(default=2000, ge=0)
    audit_queue: int = Field(default=10_000, ge=1)
    audit_spill_file: str = "execution-audit-spill.jsonl"  # under logging.dir (or the state dir)
