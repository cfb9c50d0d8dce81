"""The pipeline layer: what the Dagster definitions run, without Dagster.

- ``ingest``: the durable spool -> ``position_updates`` / ``greeks_updates`` in Delta, exactly once;
- ``daily``: eod_positions (in chunks of sessions, with the previous EOD carried), daily_pnl, exposure and its
  roll-ups, each written with one partition overwrite per run;
- ``audit``: the logic behind the asset checks (exactly-once, sentinels, EOD reconciliation, PnL vs IB, coverage).

It sits between ``v6_assets.defs`` (which declares assets, checks, sensors, schedules and jobs and calls this) and the
layers it combines (analytics, lake, ib). bench/, the demo and the tests call it directly.
"""
