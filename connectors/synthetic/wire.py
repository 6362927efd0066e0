"""The synthetic venue's events in Polygon's wire forms: WebSocket (T, Q) and REST (/v3/trades, /v3/quotes)."""

from __future__ import annotations

from typing import Any

MS = 1_000_000  # ns per ms


def to_ws(ev: dict[str, Any]) -> dict[str, Any]:
    if ev["kind"] == "T":
        return {
            "ev": "T",
            "sym": ev["sym"],
            "i": ev["i"],
            "x": ev["x"],
            "p": ev["p"],
            "s": ev["s"],
            "c": ev["c"],
            "t": ev["ns"] // MS,
            "q": ev["q"],
            "z": ev["z"],
        }
    return {
        "ev": "Q",
        "sym": ev["sym"],
        "bx": ev["bx"],
        "bp": ev["bp"],
        "bs": ev["bs"],
        "ax": ev["ax"],
        "ap": ev["ap"],
        "as": ev["as"],
        "c": ev["c"],
        "t": ev["ns"] // MS,
        "q": ev["q"],
        "z": ev["z"],
    }


def to_rest(ev: dict[str, Any]) -> dict[str, Any]:
    if ev["kind"] == "T":
        return {
            "conditions": ev["c"],
            "exchange": ev["x"],
            "id": ev["i"],
            "participant_timestamp": ev["pns"],
            "price": ev["p"],
            "sequence_number": ev["q"],
            "sip_timestamp": ev["ns"],
            "size": ev["s"],
            "tape": ev["z"],
        }
    return {
        "ask_exchange": ev["ax"],
        "ask_price": ev["ap"],
        "ask_size": ev["as"],
        "bid_exchange": ev["bx"],
        "bid_price": ev["bp"],
        "bid_size": ev["bs"],
        "conditions": ev["c"],
        "participant_timestamp": ev["ns"] - 100_000,
        "sequence_number": ev["q"],
        "sip_timestamp": ev["ns"],
        "tape": ev["z"],
    }
