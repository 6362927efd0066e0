"""Tradier REST (requests): orders, order status, cancel/modify, balances, positions, stream sessions.

JSON is asked for explicitly (``Accept: application/json``; Tradier's default is XML) and bodies are
form-encoded. Rate limits: the ``X-Ratelimit-Available`` / ``X-Ratelimit-Expiry`` headers of every reply
are remembered and a request waits for the window to reset when none is left; a 429 waits the same way
and is retried. 5xx replies and network errors are retried with jittered backoff, except an order
submission: it may have reached the broker, so the caller looks its tag up before sending it again.

The token is only ever in the Authorization header; no exception or log line carries a header.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import requests

from kafkaio.errors import ScalpError
from kafkaio.retry import Backoff
from schemas.topics import ORDERS

from .settings import TradierSettings

log = logging.getLogger("scalp.tradier")


class TradierError(ScalpError):
    """A Tradier request failed for good (the message never holds the token)."""


class TradierAuthError(TradierError):
    pass


class TradierRejected(TradierError):
    """A 400 with Tradier's ``errors``: the request was refused (e.g. an order the broker rejects)."""


class AmbiguousSubmit(TradierError):
    """An order POST whose outcome is unknown (timeout, connection reset, 5xx)."""


def _errors(reply: requests.Response) -> str:
    try:
        body = reply.json()
    except ValueError:
        return reply.text[:300] or reply.reason
    errs = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errs, dict):
        msgs = errs.get("error")
        if isinstance(msgs, list):
            return "; ".join(str(m) for m in msgs)
        if msgs:
            return str(msgs)
    return reply.text[:300]


class TradierClient:
    def __init__(
        self,
        settings: TradierSettings,
        *,
        max_attempts: int = 6,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if settings.token is None or not settings.token.get_secret_value():
            raise TradierAuthError("TRADIER_TOKEN is not set")
        if not settings.account_id:
            raise TradierAuthError("TRADIER_ACCOUNT_ID is not set")
        self.settings = settings
        self.account_id = settings.account_id
        self.base = settings.base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update(
            {"Authorization": f"Bearer {settings.token.get_secret_value()}", "Accept": "application/json"}
        )
        self.max_attempts = max_attempts
        self.sleep = sleep
        self.available: int | None = None
        self.expiry_ms: int | None = None
        self.rate_limited = 0  # 429 replies seen
        self.last_date: str | None = None  # the broker's clock (Date header) of the last reply

    # --- requests --------------------------------------------------------------------------------

    def _wait_for_window(self) -> None:
        if self.available is not None and self.available <= 0 and self.expiry_ms is not None:
            wait = self.expiry_ms / 1000 - time.time()
            if wait > 0:
                log.warning("tradier rate limit: none left in this window, waiting %.1f s", min(wait, 60))
                self.sleep(min(wait, 60.0))
            self.available = None

    def _remember(self, reply: requests.Response) -> None:
        h = reply.headers
        try:
            if "X-Ratelimit-Available" in h:
                self.available = int(h["X-Ratelimit-Available"])
            if "X-Ratelimit-Expiry" in h:
                self.expiry_ms = int(h["X-Ratelimit-Expiry"])
        except ValueError:
            pass
        self.last_date = h.get("Date", self.last_date)

    def request(
        self, method: str, path: str, *, data: Any = None, params: Any = None, submit: bool = False
    ) -> dict[str, Any]:
        url = f"{self.base}{path}"
        backoff = Backoff(base_s=0.25, cap_s=8.0)
        for attempt in range(1, self.max_attempts + 1):
            self._wait_for_window()
            try:
                reply = self.session.request(method, url, data=data, params=params, timeout=self.settings.timeout_s)
            except requests.RequestException as exc:
                if submit:
                    raise AmbiguousSubmit(f"{method} {path}: {type(exc).__name__}") from None
                log.warning("tradier %s %s: %s (attempt %d)", method, path, type(exc).__name__, attempt)
                self.sleep(backoff.next_delay())
                continue
            self._remember(reply)
            if reply.status_code == 429:
                self.rate_limited += 1
                self.available = 0
                if self.expiry_ms is None or self.expiry_ms / 1000 <= time.time():
                    self.expiry_ms = int((time.time() + backoff.next_delay()) * 1000)
                log.warning("tradier %s %s: 429 rate limited (attempt %d)", method, path, attempt)
                continue
            if reply.status_code == 401:
                raise TradierAuthError("Tradier rejected the token")
            if reply.status_code >= 500:
                if submit:
                    raise AmbiguousSubmit(f"{method} {path}: HTTP {reply.status_code}")
                log.warning("tradier %s %s: HTTP %d (attempt %d)", method, path, reply.status_code, attempt)
                self.sleep(backoff.next_delay())
                continue
            if reply.status_code >= 400:
                raise TradierRejected(_errors(reply))
            try:
                body = reply.json()
            except ValueError:
                raise TradierError(f"{method} {path}: the reply is not JSON") from None
            return body if isinstance(body, dict) else {}
        raise TradierError(f"{method} {path}: gave up after {self.max_attempts} attempts")

    # --- endpoints -------------------------------------------------------------------------------

    def submit(self, form: list[tuple[str, str]]) -> dict[str, Any]:
        body = self.request("POST", f"/accounts/{self.account_id}/orders", data=form, submit=True)
        order = body.get("order")
        if not isinstance(order, dict):
            raise TradierError("order submission: no order in the reply")
        return order

    def orders(self) -> list[dict[str, Any]]:
        """Today's orders (``filter=intraday``), every page."""
        from .parsing import items

        out: list[dict[str, Any]] = []
        page = 1
        while True:
            body = self.request(
                "GET",
                f"/accounts/{self.account_id}/orders",
                params={"filter": "intraday", "includeTags": "true", "page": page, "limit": 100},
            )
            batch = items(body.get(ORDERS), "order")
            out.extend(batch)
            if len(batch) < 100:
                return out
            page += 1

    def order(self, broker_order_id: str) -> dict[str, Any]:
        body = self.request(
            "GET", f"/accounts/{self.account_id}/orders/{broker_order_id}", params={"includeTags": "true"}
        )
        order = body.get("order")
        if not isinstance(order, dict):
            raise TradierError(f"order {broker_order_id}: not found")
        return order

    def cancel(self, broker_order_id: str) -> dict[str, Any]:
        return self.request("DELETE", f"/accounts/{self.account_id}/orders/{broker_order_id}")

    def modify(self, broker_order_id: str, **fields: str) -> dict[str, Any]:
        return self.request("PUT", f"/accounts/{self.account_id}/orders/{broker_order_id}", data=fields)

    def balances(self) -> dict[str, Any]:
        return self.request("GET", f"/accounts/{self.account_id}/balances")

    def positions(self) -> dict[str, Any]:
        return self.request("GET", f"/accounts/{self.account_id}/positions")

    def stream_session(self) -> str:
        body = self.request("POST", "/accounts/events/session")
        stream = body.get("stream") or {}
        sid = stream.get("sessionid")
        if not sid:
            raise TradierError("account events session: no sessionid in the reply")
        return str(sid)
