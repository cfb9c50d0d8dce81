"""The pipeline layer's settings model: how much one drain of the spool may do, and how ranges are chunked."""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import Field, field_validator

from v6_assets.contracts.settings import EnvSettings


class PipelineEnvironment(EnvSettings):
    sensor_budget_s: float = Field(
        30.0,
        ge=1.0,
        allow_inf_nan=False,
        validation_alias="V6_SENSOR_BUDGET_S",
        description="time budget of one drain (one sensor tick; keep under Dagster's 60 s sensor timeout)",
    )
    sensor_max_rows: int = Field(
        200_000, ge=1, validation_alias="V6_SENSOR_MAX_ROWS", description="spool rows one drain reads at most"
    )
    sensor_batch_rows: int = Field(
        20_000, ge=1, validation_alias="V6_SENSOR_BATCH_ROWS", description="spool rows per Delta commit"
    )
    sessions_per_chunk: int = Field(
        5,
        ge=1,
        validation_alias="V6_SESSIONS_PER_CHUNK",
        description="sessions computed together in a range run (bounds the memory)",
    )
    # explain and risk (issue 20): the scenario grid and the pin-risk rule
    risk_spot_shifts_pct: str = Field(
        "-10,-5,-2,-1,0,1,2,5,10",
        validation_alias="V6_RISK_SPOT_SHIFTS_PCT",
        description="risk_scenarios: spot shifts in percent, comma-separated (must include 0)",
    )
    risk_vol_shifts_pts: str = Field(
        "-10,-5,0,5,10",
        validation_alias="V6_RISK_VOL_SHIFTS_PTS",
        description="risk_scenarios: implied-vol shifts in vol points, comma-separated (must include 0)",
    )
    risk_rate: float = Field(
        0.0,
        ge=-0.2,
        le=1.0,
        allow_inf_nan=False,
        validation_alias="V6_RISK_RATE",
        description="risk_scenarios: risk-free rate (decimal) of the Black-Scholes / Black-76 revaluation",
    )
    pin_pct: float = Field(
        1.0,
        ge=0.0,
        allow_inf_nan=False,
        validation_alias="V6_PIN_PCT",
        description="expiry_ladder: a short option within this % of its strike is at pin risk",
    )
    pin_sessions: int = Field(
        1,
        ge=0,
        validation_alias="V6_PIN_SESSIONS",
        description="expiry_ladder: ... when it expires within this many sessions",
    )

    @field_validator("risk_spot_shifts_pct", "risk_vol_shifts_pts")
    @classmethod
    def _shifts(cls, raw: str) -> str:
        values = shifts(raw)
        if 0.0 not in values or len(set(values)) != len(values):
            raise ValueError("distinct numbers including 0 expected")
        return raw

    def scenario_shifts(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return shifts(self.risk_spot_shifts_pct), shifts(self.risk_vol_shifts_pts)


def shifts(raw: str) -> tuple[float, ...]:
    """``"-10, -5,0"`` -> ``(-10.0, -5.0, 0.0)``; a non-number or a non-finite number is a ValueError."""
    values = tuple(float(part) for part in raw.split(",") if part.strip())
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"finite numbers expected, got {raw!r}")
    return values


class StatementsEnvironment(EnvSettings):
    """IB Flex statements: the drop folder, the mark tolerance of the reconciliation, the optional Flex Web Service."""

    statements_dir: str = Field(
        "", validation_alias="V6_STATEMENTS_DIR", description="folder watched for Flex statement files"
    )
    mark_tolerance: float = Field(
        0.01,
        ge=0.0,
        allow_inf_nan=False,
        validation_alias="V6_STATEMENT_MARK_TOLERANCE",
        description="reconciliation: our cut mark vs IB's closing mark, relative (at least one cent)",
    )
    flex_token: str = Field(
        "", repr=False, validation_alias="V6_FLEX_TOKEN", description="Flex Web Service token (a secret)"
    )
    flex_query_id: str = Field("", validation_alias="V6_FLEX_QUERY_ID", description="Flex query id of the statement")
    flex_url: str = Field(
        "https://ndcdyn.interactivebrokers.com/AccountManagement/FlexWebService",
        validation_alias="V6_FLEX_URL",
        description="Flex Web Service base URL",
    )

    def statements_folder(self, home: Path) -> Path:
        return Path(self.statements_dir) if self.statements_dir else home / "statements"

    @property
    def web_service_on(self) -> bool:
        return bool(self.flex_token and self.flex_query_id)
