"""The layers' settings models: the README's configuration table equals them; bad values name their variable."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from v6_assets.contracts.settings import EnvSettings, SettingsError
from v6_assets.defs.settings import DefsEnvironment
from v6_assets.ib.settings import IBEnvironment, StreamerSettings
from v6_assets.lake.settings import LakeEnvironment
from v6_assets.pipeline.settings import PipelineEnvironment, StatementsEnvironment
from v6_assets_tests.pyenv import set_env

ROOT = Path(__file__).resolve().parents[1]
MODELS: tuple[type[EnvSettings], ...] = (
    IBEnvironment,
    LakeEnvironment,
    PipelineEnvironment,
    DefsEnvironment,
    StatementsEnvironment,
)
ROW = re.compile(r"^\| `(V6_[A-Z0-9_]+)` \| (.+?) \| (.+) \|$")


def readme_table() -> dict[str, str]:
    """Variable -> its default cell, from the README's configuration table."""
    rows: dict[str, str] = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        match = ROW.match(line)
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} is in the README table twice"
            rows[match.group(1)] = match.group(2)
    return rows


def shown(default: Any) -> str:
    """How the README writes a default."""
    if isinstance(default, tuple):
        return ",".join(default)
    if isinstance(default, Path):
        return f"./{default}"
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    if isinstance(default, date):
        return default.isoformat()
    return str(default)


def model_table() -> dict[str, tuple[Any, str | None]]:
    out: dict[str, tuple[Any, str | None]] = {}
    for model in MODELS:
        for var, name in model.variables().items():
            assert var not in out, f"{var} is read by two layers' models"
            field = model.model_fields[name]
            out[var] = (field.default, field.description)
    return out


def test_readme_configuration_table_equals_the_settings_models() -> None:
    readme, models = readme_table(), model_table()
    assert sorted(readme) == sorted(models)
    for var, (default, description) in models.items():
        assert description, f"{var} has no description in its model"
        if default in ((), ""):
            assert "`" not in readme[var], f"{var}: empty default, the README says what it means instead"
        else:
            assert readme[var] == f"`{shown(default)}`", var


def test_defaults_by_hand() -> None:
    assert readme_table()["V6_IB_SEC_TYPES"] == "`OPT,FOP`"
    ib = IBEnvironment.read({})
    assert (ib.host, ib.port, ib.client_id, ib.accounts, ib.handler_queue_size) == ("127.0.0.1", 4002, 61, (), 10_000)
    assert ib.streamer_settings() == StreamerSettings()
    assert LakeEnvironment.read({}).uri == "./.v6/lake"
    assert PipelineEnvironment.read({"V6_SESSIONS_PER_CHUNK": " "}).sessions_per_chunk == 5  # blank = unset
    defs = DefsEnvironment.read({"V6_PARTITIONS_START": "2024-06-03", "V6_REFRESH_MINUTES": "2.5"})
    assert (defs.partitions_start, defs.refresh_minutes, defs.sensor_interval_s) == (date(2024, 6, 3), 2.5, 5)


def test_values_are_read_from_the_given_mapping_with_their_types() -> None:
    env = {"V6_IB_ACCOUNTS": "DU1, DU2,", "V6_IB_SEC_TYPES": "opt", "V6_IB_HANDLER_QUEUE_SIZE": "50", "V6_HOME": "/x"}
    settings = IBEnvironment.read(env).streamer_settings()
    assert settings.accounts == ("DU1", "DU2") and settings.sec_types == ("OPT",)
    assert settings.handler_queue_size == 50 and settings.home == Path("/x")


@pytest.mark.parametrize(
    ("model", "var", "value"),
    [
        (IBEnvironment, "V6_IB_HANDLER_QUEUE_SIZE", "many"),
        (IBEnvironment, "V6_IB_CONNECT_TIMEOUT_S", "inf"),
        (PipelineEnvironment, "V6_SENSOR_BUDGET_S", "0.5"),
        (PipelineEnvironment, "V6_SESSIONS_PER_CHUNK", "0"),
        (PipelineEnvironment, "V6_SESSIONS_PER_CHUNK", "two"),
        (DefsEnvironment, "V6_SENSOR_INTERVAL_S", "0"),
        (DefsEnvironment, "V6_GREEKS_COVERAGE_MIN", "1.5"),
        (DefsEnvironment, "V6_PNL_TOLERANCE", "-1"),
        (DefsEnvironment, "V6_PARTITIONS_START", "yesterday"),
    ],
)
def test_a_bad_value_names_its_variable_and_value(model: type[EnvSettings], var: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{var}={value!r} is invalid: "):
        model.read({var: value})


def test_the_handler_queue_size_is_read_and_checked() -> None:
    with pytest.raises(SettingsError, match="V6_IB_HANDLER_QUEUE_SIZE: queue size must be >= 1"):
        IBEnvironment.read({"V6_IB_HANDLER_QUEUE_SIZE": "0"}).streamer_settings()


def test_a_model_reads_only_the_mapping_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, "V6_HOME", "/elsewhere")
    set_env(monkeypatch, "V6_IB_PORT", "4999")
    ib = IBEnvironment.read({})
    assert (ib.streamer_settings().home, ib.port) == (Path("./.v6"), 4002)
    assert IBEnvironment.read().port == 4999  # no mapping: the process environment
