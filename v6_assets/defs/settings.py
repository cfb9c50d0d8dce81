"""The Dagster wiring's settings model: the sensor's cadence, the refresh period, the checks' thresholds, the
partitions' first day. The connection and the lake are the resources' (``IBStreamResource``, ``LakeResource``)."""

from __future__ import annotations

from datetime import date

from pydantic import Field

from v6_assets.contracts.settings import EnvSettings


class DefsEnvironment(EnvSettings):
    sensor_interval_s: int = Field(
        5,
        ge=1,
        validation_alias="V6_SENSOR_INTERVAL_S",
        description="streaming sensor interval (Dagster's daemon loop makes ~5 s the floor)",
    )
    statements_interval_s: int = Field(
        30,
        ge=1,
        validation_alias="V6_STATEMENTS_INTERVAL_S",
        description="how often the flex_statements sensor looks for new statement files (a file is taken once it is "
        "unchanged for one interval)",
    )
    refresh_minutes: float = Field(
        5.0,
        ge=0.0,
        allow_inf_nan=False,
        validation_alias="V6_REFRESH_MINUTES",
        description="at most one refresh run of today's daily assets per this many minutes, only when new data arrived",
    )
    pnl_tolerance: float = Field(
        0.01,
        ge=0.0,
        allow_inf_nan=False,
        validation_alias="V6_PNL_TOLERANCE",
        description="check: computed daily PnL vs IB's own daily PnL",
    )
    greeks_coverage_min: float = Field(
        0.9,
        ge=0.0,
        le=1.0,
        validation_alias="V6_GREEKS_COVERAGE_MIN",
        description="check: share of open positions with complete greeks",
    )
    integrity_minutes: float = Field(
        5.0,
        ge=0.0,
        allow_inf_nan=False,
        validation_alias="V6_INTEGRITY_MINUTES",
        description="how often the sensor checks the lake's integrity; 0 = every tick",
    )
    partitions_start: date = Field(
        date(2025, 1, 2),
        validation_alias="V6_PARTITIONS_START",
        description="first session of the daily partitions",
    )
    risk_limits_file: str = Field(
        "",
        validation_alias="V6_RISK_LIMITS_FILE",
        description="YAML limits per account/underlying for the risk checks (net delta, vega, theta, worst loss)",
    )
