"""Polygon / Massive REST through the `massive` RESTClient: trades, quotes, minute aggregates, options.

The client retries 429 (honouring Retry-After) and 5xx with urllib3's backoff; what still fails becomes
RetryableError here, and a rejected key becomes ConfigError ("Polygon rejected the API key").
Results are converted to topic records by connectors.polygon.parsing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

from massive import RESTClient
from massive.exceptions import AuthError, BadResponse
from urllib3.exceptions import HTTPError

from kafkaio.errors import ConfigError, RetryableError

from . import parsing
from .settings import PolygonSettings

log = logging.getLogger(__name__)
REJECTED = "Polygon rejected the API key"


def _as_dict(model: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(model) and not isinstance(model, type):
        return dataclasses.asdict(model)
    return dict(model)


class PolygonRest:
    def __init__(self, settings: PolygonSettings, clock_ns: Callable[[], int]) -> None:
        if settings.api_key is None:
            raise ConfigError("POLYGON_API_KEY (or MASSIVE_API_KEY) is not set")
        self.settings = settings
        self.clock_ns = clock_ns
        self.client = RESTClient(
            api_key=settings.api_key.get_secret_value(),
            base=settings.rest_url.rstrip("/"),
            connect_timeout=settings.rest_timeout_s,
            read_timeout=settings.rest_timeout_s,
            retries=settings.rest_retries,
            pagination=True,
        )

    def _pages(self, what: str, iterator: Iterator[Any]) -> Iterator[dict[str, Any]]:
        try:
            for model in iterator:
                yield _as_dict(model)
        except BadResponse as exc:
            body = str(exc)
            if _is_auth_failure(body):
                raise ConfigError(REJECTED) from None
            raise RetryableError(f"Polygon REST {what}: {_short(body)}") from None
        except AuthError:
            raise ConfigError(REJECTED) from None
        except HTTPError as exc:  # retries exhausted, connection refused, timeouts
            raise RetryableError(f"Polygon REST {what}: {type(exc).__name__}: {_short(str(exc))}") from None

    def trades(self, symbol: str, gte_ns: int, lte_ns: int) -> Iterator[dict[str, Any]]:
        """Trades with gte_ns <= sip_timestamp <= lte_ns, oldest first."""
        rows = self.client.list_trades(symbol, **self._window(gte_ns, lte_ns))
        for row in self._pages(f"trades {symbol}", rows):
            yield parsing.rest_trade(symbol, row, self.clock_ns())

    def quotes(self, symbol: str, gte_ns: int, lte_ns: int) -> Iterator[dict[str, Any]]:
        """Quotes with gte_ns <= sip_timestamp <= lte_ns, oldest first."""
        rows = self.client.list_quotes(symbol, **self._window(gte_ns, lte_ns))
        for row in self._pages(f"quotes {symbol}", rows):
            yield parsing.rest_quote(symbol, row, self.clock_ns())

    def _window(self, gte_ns: int, lte_ns: int) -> dict[str, Any]:
        return {
            "timestamp_gte": gte_ns,
            "timestamp_lte": lte_ns,
            "order": "asc",
            "sort": "timestamp",
            "limit": self.settings.rest_page_limit,
        }

    def minute_bars(self, symbol: str, from_ms: int, to_ms: int) -> Iterator[dict[str, Any]]:
        """Minute bars whose start lies in [from_ms, to_ms], oldest first."""
        rows = self.client.list_aggs(symbol, 1, "minute", from_ms, to_ms, adjusted=True, sort="asc", limit=50_000)
        for row in self._pages(f"aggs {symbol}", rows):
            yield parsing.rest_minute_bar(symbol, row, self.clock_ns())

    def option_chain(self, underlying: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        rows = self.client.list_snapshot_options_chain(underlying, params={"limit": 250, **params})
        yield from self._pages(f"options snapshot {underlying}", rows)


def _is_auth_failure(body: str) -> bool:
    try:
        payload = json.loads(body)
    except ValueError:
        return "API Key" in body or "Unauthorized" in body
    text = f"{payload.get('status', '')} {payload.get('error', '')} {payload.get('message', '')}"
    return "API Key" in text or "NOT_AUTHORIZED" in text or "Unauthorized" in text


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
