"""The lake layer's settings model: where the Delta tables live (credentials: the standard ``AWS_*`` variables)."""

from __future__ import annotations

from pydantic import Field

from v6_assets.contracts.settings import EnvSettings

DEFAULT_LAKE_URI = "./.v6/lake"


class LakeEnvironment(EnvSettings):
    uri: str = Field(
        DEFAULT_LAKE_URI,
        validation_alias="V6_LAKE_URI",
        description="root of the Delta tables; `s3://bucket/prefix` with the standard `AWS_*` variables",
    )
