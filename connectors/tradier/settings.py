"""Typed settings for the Tradier connector."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class TradierSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token: SecretStr | None = None
    account_id: str | None = None
    base_url: str = "https://api.tradier.com/v1"
    stream_url: str = "wss://ws.tradier.com/v1/accounts/events"
    timeout_s: float = Field(default=15.0, gt=0)
