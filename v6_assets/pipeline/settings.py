"""The pipeline layer's settings model: how much one drain of the spool may do, and how ranges are chunked."""

from __future__ import annotations

from pathlib import Path

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
