"""The pipeline layer's settings model: how much one drain of the spool may do, and how ranges are chunked."""

from __future__ import annotations

from pydantic import Field

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
