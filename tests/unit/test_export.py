"""Point-in-time export: the features of each signal are the latest at or before it, never later."""

from __future__ import annotations

import random
from typing import Any

from backtest.export import point_in_time

MS = 1_000_000


def feat(symbol: str, ms: int, vwap: float) -> dict[str, Any]:
    return {"symbol": symbol, "ts": ms * MS, "vwap": vwap, "session": "rth"}


def sig(sid: str, symbol: str, ms: int) -> dict[str, Any]:
    return {"id": sid, "symbol": symbol, "ts": ms * MS, "setup": "x", "side": "long", "status": "promoted"}


def test_features_as_of_the_signal_and_labels_joined() -> None:
    features = [feat("SPY", 0, 1.0), feat("SPY", 1000, 2.0), feat("SPY", 2000, 3.0), feat("QQQ", 1500, 9.0)]
    signals = [sig("a", "SPY", 1999), sig("b", "SPY", 2000), sig("c", "QQQ", 1400), sig("d", "QQQ", 1600)]
    labels = [{"signal_id": "a", "outcome": "TP", "r": 1.5}]
    rows, check = point_in_time(signals, features, labels)
    assert [(r["id"], r["feature_ts"] // MS, r["f_vwap"]) for r in rows] == [  # in signal time order
        ("d", 1500, 9.0),  # c (1400 ms) has no QQQ snapshot before it
        ("a", 1000, 2.0),  # 1999 ms: the 2000 ms snapshot is in its future
        ("b", 2000, 3.0),  # at the same time: the snapshot for that second exists
    ]
    assert (rows[1]["label_outcome"], rows[1]["label_r"], rows[2]["label_outcome"]) == ("TP", 1.5, None)
    assert (check["rows"], check["signals_without_features"], check["labelled"]) == (3, 1, 1)
    assert check["max_feature_age_ms"] == 999.0


def test_no_row_ever_uses_a_later_snapshot() -> None:
    rng = random.Random(7)
    features = [feat(rng.choice(["SPY", "QQQ"]), rng.randrange(0, 100_000), rng.random()) for _ in range(2000)]
    signals = [sig(str(i), rng.choice(["SPY", "QQQ"]), rng.randrange(0, 100_000)) for i in range(500)]
    rows, _ = point_in_time(signals, features, [])
    for r in rows:
        candidates = [f["ts"] for f in features if f["symbol"] == r["symbol"] and f["ts"] <= r["ts"]]
        assert r["feature_ts"] == max(candidates)  # the latest one allowed, and nothing after the signal
