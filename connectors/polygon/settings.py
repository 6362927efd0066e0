"""Typed settings for the Polygon / Massive connector."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class PolygonSettings(BaseModel):
    """Venue URLs are whole URLs; ws:// and http:// (local test servers) work as well as the secure ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: SecretStr | None = None
    ws_url: str = "wss://socket.massive.com/stocks"
    rest_url: str = "https://api.massive.com"
    symbols: tuple[str, ...] = ("SPY", "QQQ")
    rest_timeout_s: float = Field(default=30.0, gt=0)
