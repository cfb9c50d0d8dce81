"""``v6``: the stream's health and the stored book in a terminal. Exit codes: 0 ok, 1 a problem (unhealthy stream,
nothing stored for what was asked), 2 a usage error (click's own, naming the argument).

Every read command takes ``--json`` (one JSON document on stdout) and ``--lake`` (default ``$V6_LAKE_URI``).
Nothing here needs Dagster running or an IB connection: the commands read the files the stream and the daily runs
wrote (the status file, the lease, the spool, the Delta tables).
"""

from __future__ import annotations

import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
import polars as pl

from v6_assets import sessions as nyse
from v6_assets.cli.render import emit_json, frame_records, print_table
from v6_assets.contracts.clock import utc_now
from v6_assets.contracts.settings import SettingsError
from v6_assets.contracts.tables import ROLLUP_COLUMN, ROLLUP_DETAIL
from v6_assets.ib.settings import IBEnvironment
from v6_assets.lake import Lake

EXIT_PROBLEM = 1

json_option = click.option("--json", "as_json", is_flag=True, help="print one JSON document instead of a table")
lake_option = click.option(
    "--lake", "lake_uri", default=None, metavar="URI", help="Delta lake (default: $V6_LAKE_URI, else ./.v6/lake)"
)


def _lake(uri: str | None) -> Lake:
    return Lake.for_uri(uri) if uri else Lake.from_env()


def _problem(message: str, as_json: bool) -> None:
    if as_json:
        emit_json({"ok": False, "problem": message})
    else:
        click.echo(f"v6: {message}", err=True)
    sys.exit(EXIT_PROBLEM)


def _session(value: datetime) -> date:
    day = value.date()
    if not nyse.is_session(day):
        raise click.BadParameter(f"{day} is not an NYSE session", param_hint="'--session'")
    return day


def _stored(lake: Lake, table: str, day: date, as_json: bool) -> pl.DataFrame:
    if not lake.exists(table):
        _problem(f"no {table} table in the lake at {lake.uri}: nothing computed yet", as_json)
    rows = lake.read_sessions(table, [day])
    if rows.height == 0:
        _problem(f"{table} holds no rows for {day}: materialize {table} for that session first", as_json)
    return rows


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """v6_assets: option positions from Interactive Brokers, streamed into Delta Lake (read-only)."""


session_option = click.option(
    "--session",
    "session_day",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="NYSE session, YYYY-MM-DD",
)
account_option = click.option("--account", default=None, help="only this IB account")

PNL_COLUMNS = (
    "account",
    "symbol",
    "expiry",
    "strike",
    "right",
    "con_id",
    "currency",
    "prev_position",
    "position",
    "pnl",
    "pnl_source",
    "ib_daily_pnl",
    "pnl_minus_ib",
    "is_baseline",
)


def _totals(rows: pl.DataFrame, amount: str) -> pl.DataFrame:
    """Per account and currency: the sum of the known amounts, and how many are unknown (never summed as 0)."""
    return (
        rows.group_by("account", "currency")
        .agg(
            pl.col(amount).sum().alias(amount),
            pl.col(amount).is_null().sum().alias("unknown"),
            pl.len().alias("positions"),
        )
        .sort("account", "currency")
    )


@main.command()
@session_option
@account_option
@json_option
@lake_option
def pnl(session_day: datetime, account: str | None, as_json: bool, lake_uri: str | None) -> None:
    """Daily PnL of a session per position, with the total per account (from the stored daily_pnl table)."""
    day = _session(session_day)
    rows = _stored(_lake(lake_uri), "daily_pnl", day, as_json)
    if account is not None:
        rows = rows.filter(pl.col("account") == account)
        if rows.height == 0:
            _problem(f"daily_pnl of {day} holds no rows for account {account}", as_json)
    rows = rows.sort("account", "symbol", "expiry", "strike", "right")
    totals = _totals(rows, "pnl")
    if as_json:
        emit_json({"ok": True, "session": day, "totals": frame_records(totals), "rows": frame_records(rows)})
        return
    print_table(f"daily PnL {day}", rows, PNL_COLUMNS)
    print_table(f"total daily PnL {day} per account", totals, ("account", "currency", "pnl", "unknown", "positions"))


EXPOSURE_COLUMNS = (
    ROLLUP_COLUMN,
    "account",
    "underlying",
    "expiry",
    "currency",
    "positions",
    "contracts",
    "delta_shares",
    "dollar_delta",
    "gamma_shares",
    "vega",
    "theta",
    "notional",
    "greeks_coverage",
)


@main.command()
@session_option
@account_option
@click.option("--detail/--rollups", default=False, help="detail rows (account x underlying x expiry) or roll-ups")
@json_option
@lake_option
def exposure(session_day: datetime, account: str | None, detail: bool, as_json: bool, lake_uri: str | None) -> None:
    """Exposure of a session at the EOD cut (from the stored exposure table): roll-ups by default."""
    day = _session(session_day)
    rows = _stored(_lake(lake_uri), "exposure", day, as_json)
    wanted = pl.col(ROLLUP_COLUMN) == ROLLUP_DETAIL
    rows = rows.filter(wanted if detail else ~wanted)
    if account is not None:
        rows = rows.filter(pl.col("account") == account)
    rows = rows.sort(ROLLUP_COLUMN, "account", "underlying", "expiry", nulls_last=True)
    if as_json:
        emit_json({"ok": True, "session": day, "rows": frame_records(rows)})
        return
    print_table(f"exposure {day} ({'detail' if detail else 'roll-ups'})", rows, EXPOSURE_COLUMNS)


BOOK_COLUMNS = (
    "account",
    "symbol",
    "expiry",
    "strike",
    "right",
    "position",
    "market_price",
    "market_value",
    "pnl_so_far",
    "ib_daily_pnl",
    "delta",
    "implied_vol",
    "mark_age_s",
    "is_stale_mark",
)


def _as_of(value: str, zone: str) -> datetime:
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise click.BadParameter(f"unknown time zone {zone!r}", param_hint="'--tz'") from exc
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(
            f"{value!r} is not a time; use 'YYYY-MM-DD HH:MM[:SS]' (New York time unless --tz or an offset is given)",
            param_hint="'--as-of'",
        ) from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


@main.command()
@click.option("--as-of", "as_of", required=True, metavar="'YYYY-MM-DD HH:MM'", help="the moment (New York time)")
@click.option("--tz", "zone", default="America/New_York", show_default=True, help="zone of --as-of")
@account_option
@json_option
@lake_option
def book(as_of: str, zone: str, account: str | None, as_json: bool, lake_uri: str | None) -> None:
    """Positions, marks, greeks and PnL so far as of any past moment, from the stored updates."""
    from v6_assets.pipeline.book_as_of import stored_book

    moment = _as_of(as_of, zone)
    if moment > utc_now():
        raise click.BadParameter(f"{moment.isoformat()} is in the future", param_hint="'--as-of'")
    try:
        result = stored_book(_lake(lake_uri), moment, account)
    except (FileNotFoundError, nyse.SessionCalendarError) as exc:
        _problem(str(exc), as_json)
        return
    rows = result.rows.filter(~pl.col("is_closed")).sort("account", "symbol", "expiry", "strike", "right")
    if rows.height == 0:
        _problem(f"no open position as of {moment.isoformat()} in session {result.session}", as_json)
    if as_json:
        emit_json(
            {
                "ok": True,
                "as_of": moment,
                "session": result.session,
                "previous_eod": result.previous_eod_origin,
                "rows": frame_records(rows),
            }
        )
        return
    caption = f"session {result.session}; previous state: {result.previous_eod_origin}"
    print_table(f"book as of {moment.isoformat()}", rows, BOOK_COLUMNS, caption)
    print_table("PnL so far per account", _totals(rows, "pnl_so_far"), ("account", "currency", "pnl_so_far", "unknown"))


def _status_lines(report: Any) -> list[str]:
    status = report.status or {}
    conn = status.get("connection") or {}
    subs = status.get("subscriptions") or {}
    lines = [f"gateway     {report.gateway}"] if report.gateway else []
    lines += [
        f"stream      {report.stream_id}: {'HEALTHY' if report.healthy else 'UNHEALTHY'}",
        f"lease       {report.lease or 'nobody holds it'}",
        f"connected   {conn.get('connected')} since {conn.get('connected_since')} "
        f"(reconnects {conn.get('reconnects')}, circuit {conn.get('circuit_state')})",
        f"state       {conn.get('health') or conn.get('health_state')}",
        f"last msg    {conn.get('last_message_age_s')} s ago; status written {report.status_age_s} s ago",
        f"subscribed  accounts {subs.get('accounts')}, PnL lines {subs.get('pnl_subscriptions')}, "
        f"market data lines {subs.get('greeks_lines')}/{subs.get('line_budget')}",
        f"spool       {report.spool}",
    ]
    lines += [f"last commit {table}: {when or 'never'}" for table, when in report.last_commits.items()]
    lines += [f"last 24 h   {h}" for h in report.health_24h] or ["last 24 h   no connection gap recorded"]
    lines += [f"PROBLEM     {p}" for p in report.problems]
    return lines


@main.command()
@click.option("--quiet", is_flag=True, help="print nothing; the exit code says it (for health checks)")
@json_option
@lake_option
def status(quiet: bool, as_json: bool, lake_uri: str | None) -> None:
    """The stream's health without Dagster, every gateway's with V6_IB_GATEWAYS: exit 0 healthy (all of them), 1
    unhealthy (usable as a health check)."""
    from v6_assets.pipeline.stream_status import stream_report

    try:
        gateways = IBEnvironment.read().gateway_settings()
    except SettingsError as exc:
        _problem(str(exc), as_json)
        return
    lake = None if quiet else _lake(lake_uri)
    now = utc_now()
    reports = [stream_report(settings, lake, now) for settings in gateways]
    healthy = all(report.healthy for report in reports)
    if as_json:
        one = len(reports) == 1 and not reports[0].gateway
        emit_json(reports[0].as_json() if one else {"healthy": healthy, "gateways": [r.as_json() for r in reports]})
    elif not quiet:
        click.echo("\n\n".join("\n".join(_status_lines(report)) for report in reports))
    sys.exit(0 if healthy else EXIT_PROBLEM)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("sim_args", nargs=-1, type=click.UNPROCESSED)
def sim(sim_args: tuple[str, ...]) -> None:
    """The IB Gateway simulator (same options as v6-gateway-sim; v6 sim --help)."""
    from v6_assets.gateway_sim.cli import main as sim_main

    sys.exit(sim_main(list(sim_args)))


@main.command()
@click.argument("scenario")
@click.option("--sessions", default=3, show_default=True, type=click.IntRange(min=1), help="sessions from the start")
@click.option(
    "--out",
    "out_dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="state of the replay (spool, lease; the lake unless --lake) [default: ./.v6/replay/<scenario file name>]",
)
@click.option(
    "--speed",
    default=None,
    type=click.FloatRange(min=1.0),
    help="simulated seconds per real second [default: the scenario's, at least 12,000]",
)
@json_option
@lake_option
def replay(
    scenario: str, sessions: int, out_dir: Path | None, speed: float | None, as_json: bool, lake_uri: str | None
) -> None:
    """A scenario (a YAML file, or a built-in name: demo, reference) through the real path (simulator -> streamer ->
    spool -> Delta -> the daily job as one range run), then the daily PnL per account and session."""
    from v6_assets.cli.replay import ReplayError, replay_scenario
    from v6_assets.gateway_sim.scenario_model import ScenarioError

    state = out_dir or Path(".v6") / "replay" / Path(scenario).stem
    say = None if as_json else (lambda m: click.echo(m, err=True))
    try:
        result = replay_scenario(Path(scenario), sessions, state, lake_uri=lake_uri, speed=speed, progress=say)
    except ScenarioError as exc:
        raise click.BadParameter(str(exc), param_hint="'SCENARIO'") from exc
    except ReplayError as exc:
        _problem(str(exc), as_json)
        return
    ok = result.run_success and not result.failed_checks
    if as_json:
        emit_json(
            {
                "ok": ok,
                "scenario": result.scenario,
                "sessions": result.sessions,
                "lake": result.lake_uri,
                "rows_written": result.rows_written,
                "run_success": result.run_success,
                "failed_checks": result.failed_checks,
                "pnl_by_account": frame_records(result.pnl_by_account),
                "duration_s": round(result.duration_s, 1),
            }
        )
    else:
        print_table(
            f"daily PnL per account: {result.scenario}",
            result.pnl_by_account,
            ("trade_date", "account", "currency", "pnl", "unknown", "positions"),
            caption="unknown: positions without a daily PnL (the first session is a baseline)",
        )
        click.echo(
            f"Delta tables: {result.lake_uri}   ({result.rows_written} streamed rows, {result.duration_s:.0f} s)"
        )
        click.echo(f"v6 pnl --session {result.sessions[-1]} --lake {result.lake_uri}   for the positions")
        if not ok:
            click.echo(f"v6: the daily run failed or a check failed: {result.failed_checks or 'see the log'}", err=True)
    sys.exit(0 if ok else EXIT_PROBLEM)
