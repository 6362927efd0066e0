"""Trade eligibility from Polygon's trade-condition update rules (config/trade_conditions.yaml).

A trade counts for a statistic only if every one of its condition codes allows it (codes not in the
table allow everything):
- ``price``: it may set the last price, minute closes, VWAP/sigma and CVD (updates_last and updates_high_low);
- ``high_low``: it may set the RTH high and low (updates_high_low);
- ``volume``: it counts in session volume (rvol) (updates_volume).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from scalp_config import default

from .errors import PolicyError

CONDITIONS_FILE = default("trade_conditions.yaml")  # packaged with scalp (scalp_config)


@dataclass(frozen=True, slots=True)
class Eligibility:
    price: bool
    high_low: bool
    volume: bool


ALL = Eligibility(True, True, True)


class ConditionTable:
    """code -> update rules, with the eligibility of each distinct condition list cached."""

    def __init__(self, rules: dict[int, tuple[bool, bool, bool]]) -> None:
        self.rules = rules  # code -> (updates_high_low, updates_last, updates_volume)
        self._cache: dict[tuple[int, ...], Eligibility] = {(): ALL}

    @classmethod
    def load(cls, path: Path = CONDITIONS_FILE) -> ConditionTable:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))["conditions"]
            rules = {
                int(code): (bool(v["updates_high_low"]), bool(v["updates_last"]), bool(v["updates_volume"]))
                for code, v in data.items()
            }
        except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
            raise PolicyError(f"{path}: not a trade-condition table ({type(exc).__name__}: {exc})") from None
        return cls(rules)

    def of(self, conditions: list[int] | tuple[int, ...] | None) -> Eligibility:
        key = tuple(conditions) if conditions else ()
        found = self._cache.get(key)
        if found is None:
            high_low = last = volume = True
            for code in key:
                rule = self.rules.get(code)
                if rule is not None:
                    high_low, last, volume = high_low and rule[0], last and rule[1], volume and rule[2]
            found = self._cache[key] = Eligibility(high_low and last, high_low, volume)
        return found
