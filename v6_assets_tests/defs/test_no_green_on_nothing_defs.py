"""In Dagster: daily_pnl of a session whose eod_positions was never computed fails with the message saying what to
materialize; computed with its upstream, its metadata is per session with money to the cent (issue 14)."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import polars as pl
from dagster import DagsterInstance, materialize

from v6_assets import analytics, sessions
from v6_assets.defs.assets import STREAM_SPECS, daily_pnl, eod_positions, exposure
from v6_assets.defs.resources import LakeResource
from v6_assets.lake import Lake

DAYS = sessions.sessions_between(date(2025, 3, 3), date(2025, 3, 5))


def _resource(tmp_path: Path) -> LakeResource:
    uri = str(tmp_path / "lake")
    lk = Lake.at(uri)
    frames = [analytics.synthetic_updates(120, 8, d, seed=9) for d in DAYS]
    updates = pl.concat([f.updates for f in frames])
    greeks = pl.concat([f.greeks for f in frames])
    updates = updates.with_columns(pl.int_range(1, updates.height + 1).alias("spool_offset"))
    greeks = greeks.with_columns(
        pl.int_range(updates.height + 1, updates.height + greeks.height + 1).alias("spool_offset")
    )
    lk.overwrite_sessions("position_updates", updates, DAYS)
    lk.overwrite_sessions("greeks_updates", greeks, DAYS)
    return LakeResource(uri=uri)


def test_daily_pnl_without_its_eod_fails_then_computes_with_it(tmp_path: Path) -> None:
    lake = _resource(tmp_path)
    assets = [*STREAM_SPECS, eod_positions, daily_pnl, exposure]
    day = DAYS[1].isoformat()
    with DagsterInstance.ephemeral() as instance:
        failed = materialize(
            assets, selection=[daily_pnl], partition_key=day, resources={"lake": lake}, instance=instance,
            raise_on_error=False,
        )  # fmt: skip
        assert not failed.success
        messages = " ".join(
            str(e.step_failure_data.user_failure_data.description)
            for e in failed.get_step_failure_events()
            if e.step_failure_data.user_failure_data is not None
        )
        assert f"eod_positions for {day} was never computed: materialize it first" in messages, messages
        assert not Lake.at(lake.uri).exists("daily_pnl")

        done = materialize(
            assets, selection=[eod_positions, daily_pnl, exposure], partition_key=day, resources={"lake": lake},
            instance=instance,
        )  # fmt: skip
        assert done.success
        pnl = next(m for m in done.get_asset_materialization_events() if m.asset_key.to_user_string() == "daily_pnl")
        metadata = pnl.materialization.metadata
        assert metadata["covers"].value == f"session {day}"
        assert "derived from the updates" in str(metadata["previous_eod"].value)  # D-1 had data: not a baseline
        text = str(metadata["total_pnl_by_account"].value)
        assert re.fullmatch(r"(\S+ [A-Z]{3} (-?[\d,]+\.\d\d|n/a)(; )?)+", text), text
        assert metadata["pnl_by_session"].value.records  # a real table with a schema, not markdown pipes
        assert re.fullmatch(r"-?[\d,]+\.\d\d|n/a.*", str(metadata["total_pnl_known"].value))
