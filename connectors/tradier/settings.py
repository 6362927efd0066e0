"""Typed settings for the Tradier connector. Live trading is explicit: the URLs default to Tradier's sandbox,
production needs ``--live`` (:meth:`TradierSettings.for_run`)."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from kafkaio.errors import ConfigError

PRODUCTION = ("https://api.tradier.com/v1", "wss://ws.tradier.com/v1/accounts/events")
SANDBOX = ("https://sandbox.tradier.com/v1", "wss://sandbox-ws.tradier.com/v1/accounts/events")
PRODUCTION_HOSTS = frozenset({"api.tradier.com", "ws.tradier.com", "stream.tradier.com"})


def is_production(url: str) -> bool:
    """Whether ``url`` is one of Tradier's production hosts (real money)."""
    return (urlsplit(url).hostname or "").lower() in PRODUCTION_HOSTS


class TradierSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token: SecretStr | None = None
    account_id: str | None = None
    # empty: Tradier's sandbox, or with --live its production API (see for_run); any other URL is used as is
    base_url: str = ""
    stream_url: str = ""
    timeout_s: float = Field(default=15.0, gt=0)

    def for_run(self, live: bool) -> TradierSettings:
        """The settings a router runs with. Unset URLs are the sandbox's, or production's with ``live``; a
        production URL without ``live`` is refused (ConfigError: exit 2), so real money is never traded by
        accident."""
        base = self.base_url or (PRODUCTION[0] if live else SANDBOX[0])
        stream = self.stream_url or (PRODUCTION[1] if live else SANDBOX[1])
        if not live:
            for name, url in (("TRADIER_BASE_URL", base), ("TRADIER_STREAM_URL", stream)):
                if is_production(url):
                    raise ConfigError(f"{name} is Tradier's production API ({url}): trading real money needs --live")
        return self.model_copy(update={"base_url": base, "stream_url": stream})

    @property
    def live(self) -> bool:
        return is_production(self.base_url)
