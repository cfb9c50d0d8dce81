"""The base of every layer's settings model: environment variables read once, typed, validated, documented.

Each layer has one model (``ib.settings.IBEnvironment``, ``lake.settings.LakeEnvironment``,
``pipeline.settings.PipelineEnvironment``, ``defs.settings.DefsEnvironment``): a pydantic-settings ``BaseSettings``
whose fields are named by their variable (``validation_alias``), with a default and a description (the README's
configuration table is checked against them). ``read(environ)`` takes the variables from a mapping (``os.environ`` by
default; tests pass a dict and never write the process environment): an unset or blank variable takes its default,
a bad value raises :class:`SettingsError` naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Self

from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class SettingsError(ValueError):
    """A configuration value that cannot be used; the message names the environment variable."""


def csv_tuple(raw: Any) -> Any:
    """``"a, b,,c"`` -> ``("a", "b", "c")`` (other values unchanged, for pydantic to check)."""
    if isinstance(raw, str):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


class EnvSettings(BaseSettings):
    """Base: immutable, variables named exactly (case-sensitive), other variables ignored."""

    model_config = SettingsConfigDict(
        frozen=True, extra="ignore", case_sensitive=True, env_ignore_empty=True, validate_default=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # ``read`` is the only way in: from the mapping it is given, never the process environment behind its back
        return (init_settings,)

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Variable name -> field name, in declaration order."""
        return {str(f.validation_alias or name): name for name, f in cls.model_fields.items()}

    @classmethod
    def read(cls, environ: Mapping[str, str] | None = None) -> Self:
        """The model from ``environ`` (default ``os.environ``); ``SettingsError`` naming the variable if invalid."""
        env = os.environ if environ is None else environ
        data = {var: env[var].strip() for var in cls.variables() if env.get(var, "").strip()}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SettingsError(_describe(exc, data)) from None


def _describe(exc: ValidationError, data: Mapping[str, str]) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        var = str(error["loc"][0]) if error["loc"] else "?"
        shown = f"{var}={data[var]!r}" if var in data else var
        message = str(error["msg"]).removeprefix("Value error, ")
        # where inside a structured value (a list of gateways): "[1].port: ..."
        inner = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"][1:]).lstrip(".")
        problems.append(f"{shown} is invalid: {inner + ': ' if inner else ''}{message}")
    return "; ".join(problems)
