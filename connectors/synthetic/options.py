"""Synthetic option chains in the shape of Polygon's /v3/snapshot/options rows (Black-Scholes prices
and greeks over a volatility smile). Deep out-of-the-money contracts come without greeks, as some do
on the real feed."""

from __future__ import annotations

import datetime as dt
import math
import random
from typing import Any
from zoneinfo import ZoneInfo

ET = ZoneInfo("America/New_York")
YEAR_S = 365.0 * 86_400
RATE = 0.04


def _cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _pdf(x: float) -> float:
    return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def black_scholes(spot: float, strike: float, years: float, vol: float, call: bool) -> dict[str, float]:
    years = max(years, 1e-6)
    sqrt_t = math.sqrt(years)
    d1 = (math.log(spot / strike) + (RATE + vol * vol / 2) * years) / (vol * sqrt_t)
    d2 = d1 - vol * sqrt_t
    disc = math.exp(-RATE * years)
    if call:
        price = spot * _cdf(d1) - strike * disc * _cdf(d2)
        delta = _cdf(d1)
        theta = -spot * _pdf(d1) * vol / (2 * sqrt_t) - RATE * strike * disc * _cdf(d2)
    else:
        price = strike * disc * _cdf(-d2) - spot * _cdf(-d1)
        delta = _cdf(d1) - 1
        theta = -spot * _pdf(d1) * vol / (2 * sqrt_t) + RATE * strike * disc * _cdf(-d2)
    return {
        "price": max(price, 0.0),
        "delta": delta,
        "gamma": _pdf(d1) / (spot * vol * sqrt_t),
        "theta": theta / 365,
        "vega": spot * _pdf(d1) * sqrt_t / 100,
    }


def occ_symbol(underlying: str, expiry: dt.date, call: bool, strike: float) -> str:
    return f"O:{underlying}{expiry:%y%m%d}{'C' if call else 'P'}{round(strike * 1000):08d}"


def chain(
    underlying: str,
    spot: float,
    as_of_ns: int,
    expiries: list[dt.date],
    seed: int,
    strike_gte: float | None = None,
    strike_lte: float | None = None,
    contract_type: str | None = None,
) -> list[dict[str, Any]]:
    """Snapshot rows for every listed contract matching the filters, ordered by expiry, strike, type."""
    rows: list[dict[str, Any]] = []
    low, high = math.floor(spot * 0.9), math.ceil(spot * 1.1)
    for expiry in sorted(expiries):
        expiry_ns = int(dt.datetime(expiry.year, expiry.month, expiry.day, 16, tzinfo=ET).timestamp()) * 10**9
        years = (expiry_ns - as_of_ns) / 1e9 / YEAR_S
        if years <= 0:
            continue
        for strike in range(low, high + 1):
            if strike_gte is not None and strike < strike_gte:
                continue
            if strike_lte is not None and strike > strike_lte:
                continue
            for call in (True, False):
                kind = "call" if call else "put"
                if contract_type is not None and contract_type != kind:
                    continue
                ticker = occ_symbol(underlying, expiry, call, strike)
                rng = random.Random(f"{seed}|{ticker}|{as_of_ns // 1_000_000_000}")
                moneyness = math.log(strike / spot)
                vol = 0.13 + 0.9 * moneyness * moneyness - 0.15 * moneyness + (0.03 if years < 2 / 365 else 0)
                greeks = black_scholes(spot, strike, years, vol, call)
                theo = greeks["price"]
                half = max(0.005, round(0.015 * theo, 2))
                bid = max(0.0, round(theo - half, 2))
                ask = round(max(theo + half, bid + 0.01), 2)
                quote_ns = as_of_ns - rng.randrange(1, 2_000) * 1_000_000
                row: dict[str, Any] = {
                    "break_even_price": round(strike + theo if call else strike - theo, 2),
                    "day": {"volume": int(5_000 * math.exp(-40 * abs(moneyness)) * rng.uniform(0.5, 1.5))},
                    "details": {
                        "contract_type": kind,
                        "exercise_style": "american",
                        "expiration_date": expiry.isoformat(),
                        "shares_per_contract": 100,
                        "strike_price": float(strike),
                        "ticker": ticker,
                    },
                    "last_quote": {
                        "ask": ask,
                        "ask_size": rng.randint(1, 300),
                        "bid": bid,
                        "bid_size": rng.randint(1, 300),
                        "midpoint": round((bid + ask) / 2, 3),
                        "last_updated": quote_ns,
                        "timeframe": "REAL-TIME",
                    },
                    "open_interest": int(20_000 * math.exp(-25 * abs(moneyness)) * rng.uniform(0.3, 1.7)),
                    "underlying_asset": {
                        "price": round(spot, 2),
                        "ticker": underlying,
                        "last_updated": as_of_ns,
                        "timeframe": "REAL-TIME",
                    },
                }
                if abs(greeks["delta"]) >= 0.01:
                    row["greeks"] = {k: round(greeks[k], 6) for k in ("delta", "gamma", "theta", "vega")}
                    row["implied_volatility"] = round(vol, 6)
                if rng.random() < 0.7:
                    row["last_trade"] = {
                        "price": round(max(0.01, theo + rng.uniform(-half, half)), 2),
                        "sip_timestamp": quote_ns - rng.randrange(0, 60_000) * 1_000_000,
                        "size": rng.randint(1, 50),
                        "exchange": 65,
                        "conditions": [209],
                        "timeframe": "REAL-TIME",
                    }
                rows.append(row)
    return rows
