"""The short version of ``make chaos``: every scenario of bench.chaos with small repetitions, against the real
simulator, real worker processes (kill -9, failpoints), a real ``dagster dev`` (reload) and real Delta tables.

Each scenario must report nothing lost, nothing duplicated, at most one IB connection, no order request, no security
finding and none of its own violations (circuit reported, heartbeat noticed, bad frames counted, partitions right...).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import SCENARIOS, Params, ScenarioResult, run_scenario
from bench.chaos_common import secret_hits

QUICK = Params.for_mode(quick=True)


def _assert_clean(result: ScenarioResult) -> None:
    details = {"error": result.error, "violations": result.violations, "notes": result.notes}
    assert result.error is None, details
    assert result.repetitions > 0, details
    assert result.lost == 0, details
    assert result.duplicated == 0, details
    assert result.max_ib_connections <= 1, details
    assert result.order_requests == 0, details
    assert not result.violations, details
    assert result.ok


def _run_clean(name: str, tmp_path: Path) -> None:
    result = run_scenario(name, QUICK, tmp_path, seed=8)
    _assert_clean(result)
    assert result.stored > 0


# Two classes so that pytest-xdist (--dist loadscope) runs them on different workers.
CONNECTION_FAULTS = ["disconnect", "refuse", "stall", "kill"]
DATA_AND_CLOCK_FAULTS = ["write", "fuzz", "time", "load"]
IB_DAY = ["week"]


class TestConnectionFaults:
    @pytest.mark.parametrize("name", CONNECTION_FAULTS)
    def test_scenario(self, name: str, tmp_path: Path) -> None:
        _run_clean(name, tmp_path)


class TestDataAndClockFaults:
    @pytest.mark.parametrize("name", DATA_AND_CLOCK_FAULTS)
    def test_scenario(self, name: str, tmp_path: Path) -> None:
        _run_clean(name, tmp_path)


class TestIBDay:
    """Monday afternoon, its night and Tuesday: reset (1101), restart, farm drop, 10197 over the close, a burst of
    40 new positions under IB's enforced pacing; every gap in stream_health and every held-back EOD row flagged."""

    @pytest.mark.parametrize("name", IB_DAY)
    def test_scenario(self, name: str, tmp_path: Path) -> None:
        result = run_scenario(name, QUICK, tmp_path, seed=8)
        _assert_clean(result)
        notes = result.notes
        assert notes["truth_gaps"] == 4 and notes["gaps_missing_from_stream_health"] == 0, notes
        assert notes["eod_rows_affected"] > 0 and notes["affected_not_flagged"] == 0, notes
        assert notes["pacing_errors"] == 0 and notes["resubscriptions"] >= 1, notes


def test_every_scenario_runs_here_or_under_dagster_dev() -> None:
    assert sorted([*CONNECTION_FAULTS, *DATA_AND_CLOCK_FAULTS, *IB_DAY, "reload", "stack"]) == sorted(SCENARIOS)


@pytest.mark.e2e
@pytest.mark.timeout(600)  # one stack start; on a loaded machine one start alone took over 90 s
class TestStackKills:
    """Issue 17, point 1, short version: the stack (supervisor, code server, webserver, daemon) supervised as
    ``make run`` does; kill -9 of its gRPC server (dagster never restarts it) and of its daemon: each time the
    supervisor restarts that part alone (the watchdog never restarts the whole stack), fresh rows stream into Delta
    again with no human, and exactly-once holds (the times are figures for make chaos)."""

    def test_grpc_server_and_daemon_kills_heal_by_themselves(self, tmp_path: Path) -> None:
        result = run_scenario("stack", QUICK, tmp_path, seed=8)
        _assert_clean(result)
        assert result.repetitions == 2 and result.stored > 0
        notes = result.notes
        log = notes["supervisor_log"]
        assert notes["supervisor_grpc_reloads"] == 1 and notes["supervisor_code_servers_killed"] == 0, log
        assert notes["supervisor_restarts"] == {"code server": 0, "webserver": 0, "daemon": 1}, log
        assert notes["watchdog_restarts"] == 0, notes["watchdog_log"]
        assert notes.get("secret_hits") == 0


# slow: a second dagster dev; make test's e2e module already reloads mid-stream, make chaos runs this 10x.
@pytest.mark.e2e
@pytest.mark.slow
def test_reload_under_dagster_dev(tmp_path: Path) -> None:
    result = run_scenario("reload", QUICK, tmp_path, seed=8)
    _assert_clean(result)
    assert result.notes.get("dagster_processes_checked", 0) >= 2
    assert result.notes.get("secret_hits") == 0


def test_verification_catches_a_lost_and_a_duplicated_row(tmp_path: Path) -> None:
    """The comparison itself can fail: delete one committed row and append a copy of another."""
    import polars as pl
    from deltalake import DeltaTable

    from bench.chaos_common import verify
    from v6_assets.lake import Lake

    result = run_scenario("disconnect", Params(**{**QUICK.__dict__, "disconnects": 1}), tmp_path, seed=3)
    _assert_clean(result)
    lake = Lake.from_env({"V6_LAKE_URI": str(tmp_path / "lake")})
    spool = next((tmp_path / "v6" / "spool").glob("*.sqlite"))
    stream_id = spool.stem
    table = DeltaTable(str(tmp_path / "lake" / "position_updates"))
    rows = pl.from_arrow(table.to_pyarrow_table())
    assert isinstance(rows, pl.DataFrame)
    victim, copied = rows["spool_offset"].sort()[5], rows.sort("spool_offset").head(1)
    table.delete(f"spool_offset = {victim}")
    from deltalake import write_deltalake

    write_deltalake(str(tmp_path / "lake" / "position_updates"), copied.to_arrow(), mode="append")
    verdict = verify(truth_sent=[], lake=lake, stream_id=stream_id, spool_path=spool, option_ids=set(), windows=[])
    assert verdict.lost == 1
    assert verdict.duplicated == 1


def test_secret_scan_finds_a_planted_secret(tmp_path: Path) -> None:
    from bench.chaos_common import FAKE_SECRETS

    (tmp_path / "clean.log").write_text("nothing here\n")
    assert secret_hits([tmp_path]) == []
    (tmp_path / "leak.log").write_text(f"password={next(iter(FAKE_SECRETS.values()))}\n")
    assert len(secret_hits([tmp_path])) == 1


def test_loopback_check_takes_only_loopback_addresses() -> None:
    """The listener check accepts what gRPC binds for ``-h 127.0.0.1`` (an IPv6 socket on ::ffff:127.0.0.1, reachable
    from this machine only) and still flags wildcard and routable addresses."""
    from bench.chaos_common import _is_loopback

    assert all(_is_loopback(ip) for ip in ("127.0.0.1", "::1", "::ffff:127.0.0.1"))
    assert not any(_is_loopback(ip) for ip in ("0.0.0.0", "::", "::ffff:10.1.2.3", "192.168.1.5", "fe80::1%eth0"))
