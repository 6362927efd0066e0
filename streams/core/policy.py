"""Session policies (config/session_policies.yaml): feature parameters, setups, filters and risk limits.

Loaded into frozen pydantic models that refuse unknown keys; an invalid file raises PolicyError naming the
key and the rule (``setups.vwap_reclaim.arm_bps: Input should be greater than 0``). The digest is the
sha256 of the canonical JSON form of the validated policy (sorted keys, defaults filled in), so comments,
key order and formatting do not change it but every value does.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from scalp_config import default

from .errors import PolicyError

POLICY_FILE = default("session_policies.yaml")  # packaged with scalp (scalp_config)
Session = Literal["pre", "rth", "post"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FeatureParams(_Frozen):
    snapshot_interval_ms: int = Field(1000, gt=0, le=60_000)
    sigma_k: float = Field(2.0, gt=0)
    lookback_days: int = Field(5, ge=1, le=60)
    warmup_days: int = Field(1, ge=0, le=60)

    @model_validator(mode="after")
    def _interval_divides_a_minute(self) -> FeatureParams:
        if 60_000 % self.snapshot_interval_ms:
            raise ValueError("snapshot_interval_ms must divide 60000 (a snapshot falls on every bar close)")
        if self.warmup_days > self.lookback_days:
            raise ValueError("warmup_days must not exceed lookback_days")
        return self


class Filters(_Frozen):
    """Filters a candidate must pass; every field may be overridden per setup."""

    sessions: tuple[Session, ...] = ("rth",)
    no_trade_open_minutes: int = Field(5, ge=0)
    no_trade_close_minutes: int = Field(5, ge=0)
    min_rvol: float = Field(0.0, ge=0)
    max_spread_bps: float = Field(5.0, gt=0)
    stale_ms: int = Field(2000, gt=0)
    imbalance_min: float = Field(-1.0, ge=-1, le=1)  # longs need ob_imbalance >= this, shorts <= -this
    require_warm: bool = True


class SetupParams(_Frozen):
    enabled: bool = True
    promote_score: float = Field(0.5, ge=0)
    cooldown_s: int = Field(300, ge=0)  # after a candidate, the machine rests this long (event time)
    # setup-specific thresholds (those a setup does not use are ignored by it)
    arm_bps: float = Field(3.0, gt=0)  # vwap_reclaim: distance beyond vwap that arms the machine
    trigger_bps: float = Field(1.0, ge=0)  # vwap_reclaim: distance back across vwap that triggers
    min_slope_bps_per_min: float = Field(0.3, ge=0)  # ema20_pullback: trend strength
    touch_bps: float = Field(2.0, ge=0)  # ema20_pullback: how close to ema20 counts as a pullback
    min_range_minutes: int = Field(15, ge=1)  # hod_lod_breakout: RTH minutes before a break counts
    cvd_lookback: int = Field(30, ge=2)  # sigma_reversion: snapshots over which CVD divergence is read
    filters: dict[str, Any] = Field(default_factory=dict)


class RiskParams(_Frozen):
    risk_per_trade_usd: float = Field(50.0, gt=0)
    max_trades_per_day: int = Field(6, ge=1)
    daily_loss_limit_r: float = Field(3.0, gt=0)
    max_drawdown_r: float = Field(4.0, gt=0)
    max_open_positions: int = Field(1, ge=1)
    cooldown_after_loss_min: float = Field(10.0, ge=0)
    max_spread_bps: float = Field(5.0, gt=0)
    stale_ms: int = Field(2000, gt=0)
    duplicate_window_s: int = Field(120, ge=0)
    sessions: tuple[Session, ...] = ("rth",)
    stop_bps: float = Field(10.0, gt=0)
    take_profit_r: float = Field(1.5, gt=0)
    time_stop_min: float = Field(15.0, gt=0)


SETUP_NAMES = ("vwap_reclaim", "ema20_pullback", "hod_lod_breakout", "sigma_reversion")


class SessionPolicy(_Frozen):
    version: int = Field(1, ge=1)
    features: FeatureParams = FeatureParams()
    filters: Filters = Filters()
    setups: dict[str, SetupParams] = Field(default_factory=dict)
    risk: RiskParams = RiskParams()

    @model_validator(mode="after")
    def _known_setups(self) -> SessionPolicy:
        for name, setup in self.setups.items():
            if name not in SETUP_NAMES:
                raise ValueError(f"unknown setup {name!r} (known: {', '.join(SETUP_NAMES)})")
            try:
                Filters.model_validate({**self.filters.model_dump(), **setup.filters})
            except ValidationError as exc:
                raise ValueError(f"setups.{name}.filters: {_first(exc)}") from None
        return self

    def setup(self, name: str) -> SetupParams:
        return self.setups.get(name) or SetupParams()

    def filters_for(self, name: str) -> Filters:
        return Filters.model_validate({**self.filters.model_dump(), **self.setup(name).filters})

    def canonical(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()


def _first(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


def parse_policy(data: Any, source: str = "session policy") -> SessionPolicy:
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: expected a mapping at the top level")
    try:
        return SessionPolicy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(f"{source}: {_first(exc)}") from None


def load_policy(path: Path = POLICY_FILE) -> SessionPolicy:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not valid YAML: {exc}") from None
    return parse_policy(data, str(path))
