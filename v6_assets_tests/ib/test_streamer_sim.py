"""IBPositionStreamer against the gateway simulator: real loopback sockets, the unmodified ib_async client."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from ib_async import IB

from v6_assets.contracts.streams import GreeksUpdate
from v6_assets.gateway_sim import GatewaySimulator
from v6_assets.ib import IBPositionStreamer, PositionUpdate, Spool, StreamerSettings
from v6_assets_tests.ib.simhelpers import missing_from_spool, option_con_ids, spooled_positions, wait_for

CLIENT_ID = 61


@pytest.fixture
def sim(request: pytest.FixtureRequest) -> Iterator[GatewaySimulator]:
    # Connections allowed at once for our client id (a test that squats the id on purpose allows 2).
    allowed = getattr(request, "param", 1)
    with GatewaySimulator("demo", port=0, speed=600).running() as simulator:
        yield simulator
        # The whole suite must never send an order-placing request.
        assert simulator.order_violations() == 0
        assert simulator.max_concurrent_connections(CLIENT_ID) <= allowed


def settings_for(sim: GatewaySimulator, home: Path, **overrides: object) -> StreamerSettings:
    base = {
        "port": sim.port,
        "client_id": CLIENT_ID,
        "home": home,
        "portfolio_rotation_s": 0.5,
        "backoff_initial_s": 0.1,
        "backoff_max_s": 0.5,
        "connect_timeout_s": 2.0,
    }
    base.update(overrides)
    return StreamerSettings(**base)  # type: ignore[arg-type]


class Collector:
    name = "collector"

    def __init__(self) -> None:
        self.positions: list[PositionUpdate] = []
        self.greeks: list[GreeksUpdate] = []

    async def on_position_update(self, update: PositionUpdate) -> None:
        self.positions.append(update)

    async def on_greeks_update(self, update: GreeksUpdate) -> None:
        self.greeks.append(update)


def test_singleton_is_one_object_across_threads_and_connects_nothing_at_import() -> None:
    seen: list[IBPositionStreamer] = []
    threads = [threading.Thread(target=lambda: seen.append(IBPositionStreamer())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(s is seen[0] for s in seen) and seen[0] is IBPositionStreamer()
    assert not seen[0].running and not seen[0].status().running


def test_values_equal_ground_truth_no_sentinels_no_stock(sim: GatewaySimulator, tmp_path: Path) -> None:
    settings = settings_for(sim, tmp_path)
    streamer = IBPositionStreamer()
    collector = Collector()
    streamer.add_handler(collector)
    status = streamer.ensure_started(settings, clock=sim.clock.now)
    assert status.running
    streamer.ensure_started(settings)  # idempotent
    with pytest.raises(ValueError, match="other settings"):
        streamer.ensure_started(settings_for(sim, tmp_path, client_id=99))
    wait_for(lambda: streamer.status().connection.connected, 10, "connection")
    # Run through the open (speed 600: ~3 s real to 09:30 ET) so marks, PnL and greeks move.
    time.sleep(7)
    status = streamer.status()
    stop_wall = time.time()
    streamer.stop()
    streamer.stop()  # idempotent
    assert not streamer.status().running

    rows = spooled_positions(settings.spool_path)
    option_ids = option_con_ids(sim)
    sent = list(sim.truth["sent"])
    # Every (account, option) the simulator reported arrives; the stock position never does.
    sent_keys = {(e["account"], e["con_id"]) for e in sent if e["kind"] == "position" and e["con_id"] in option_ids}
    assert {(r.account, r.con_id) for r in rows} == sent_keys
    assert all(r.sec_type in ("OPT", "FOP") for r in rows)
    assert status.counters.non_option_dropped > 0
    # Every value sent while connected is in the spool, equal (sentinels as None).
    missing = missing_from_spool(sent, rows, option_ids, CLIENT_ID, keep=lambda e: e["wall_time"] < stop_wall - 1.0)
    assert missing == []
    assert {r.source for r in rows} == {"position", "portfolio", "pnl_single"}
    assert any(r.ib_daily_pnl not in (None, 0.0) for r in rows)
    # Sentinels never reach an event as numbers.
    for row in rows:
        for name in ("position", "market_price", "market_value", "realized_pnl", "ib_realized_pnl", "multiplier"):
            value = getattr(row, name)
            assert value is None or (math.isfinite(value) and abs(value) < 1e300), (name, row)
    assert any(r.realized_pnl is None for r in rows)  # the simulator sends UNSET_DOUBLE for untraded positions
    by_con = {r.con_id: r for r in rows}
    assert by_con[720000003].multiplier == 103.0
    assert by_con[740000001].sec_type == "FOP" and by_con[740000001].multiplier == 50.0
    assert by_con[730000001].expiry is not None
    # Repeats are not emitted: consecutive rows of one key always differ.
    last: dict[tuple[str, int], tuple[object, ...]] = {}
    for row in rows:
        values = tuple(getattr(row, f) for f in PositionUpdate.__slots__[12:22])
        assert last.get((row.account, row.con_id)) != values
        last[(row.account, row.con_id)] = values
    # Greeks: throttled to <= 1 per contract per second (plus one trailing), no -2 leak, stamped on the sim clock.
    with Spool(settings.spool_path) as spool:
        greeks = [r.event for r in spool.read(0, 1_000_000) if isinstance(r.event, GreeksUpdate)]
    assert greeks and {g.con_id for g in greeks} <= option_ids
    assert all(g.vega != -2.0 and g.theta != -2.0 for g in greeks)
    assert all(g.received_at < sim.clock.now() for g in greeks)
    per_con: dict[int, int] = {}
    for g in greeks:
        per_con[g.con_id] = per_con.get(g.con_id, 0) + 1
    assert max(per_con.values()) <= 7 + 3
    # The registered handler saw the same stream as the spool.
    assert [u.seq for u in collector.positions] == [r.seq for r in rows]
    subs = status.subscriptions
    assert subs.pnl_subscriptions == len(sent_keys) and subs.greeks_lines == len({k[1] for k in sent_keys})
    assert len(set(subs.accounts)) == 3 and subs.portfolio_account in subs.accounts


def test_accounts_allowlist_and_line_budget(sim: GatewaySimulator, tmp_path: Path) -> None:
    settings = settings_for(sim, tmp_path, accounts=("DU1000001", "DU1000002"), line_budget=3, greeks_rotation_s=0.5)
    streamer = IBPositionStreamer()
    streamer.ensure_started(settings, clock=sim.clock.now)
    wait_for(lambda: streamer.status().connection.connected, 10, "connection")
    portfolio_accounts = set()
    lines_seen = set()
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        status = streamer.status()
        portfolio_accounts.add(status.subscriptions.portfolio_account)
        lines_seen.add(status.subscriptions.greeks_lines)
        assert sim.lines_in_use() <= 3 + 1  # a rotation cancels before it subscribes; allow one in flight
        time.sleep(0.1)
    status = streamer.status()
    streamer.stop()
    assert portfolio_accounts == {"DU1000001", "DU1000002"}
    assert lines_seen == {3}
    assert status.counters.foreign_account_dropped > 0
    rows = spooled_positions(settings.spool_path)
    assert {r.account for r in rows} == {"DU1000001", "DU1000002"}
    with Spool(settings.spool_path) as spool:
        greeks_ids = {r.event.con_id for r in spool.read(0, 1_000_000) if isinstance(r.event, GreeksUpdate)}
    # Rotation reaches more contracts than the budget pins.
    assert len(greeks_ids) > 3
    pnl_requests = [r for r in sim.requests() if r.get("name") == "reqPnLSingle" or r.get("msg_id") == 94]
    assert all("DU1000003" not in str(r) for r in pnl_requests)


def test_lease_holder_reported_and_other_streamer_does_not_connect(sim: GatewaySimulator, tmp_path: Path) -> None:
    from v6_assets.ib.lease import ConnectionLease

    settings = settings_for(sim, tmp_path)
    other = ConnectionLease(settings.locks_dir, settings.host, settings.port, settings.client_id)
    assert other.try_acquire()
    streamer = IBPositionStreamer()
    streamer.ensure_started(settings, clock=sim.clock.now)
    time.sleep(1.0)
    status = streamer.status()
    assert not status.connection.connected and not status.connection.lease_held
    assert status.connection.lease_holder is not None and "pid" in status.describe()
    assert sim.active_client_ids() == []
    other.release()
    wait_for(lambda: streamer.status().connection.connected, 10, "takeover after the lease is released")
    streamer.stop()


@pytest.mark.parametrize("sim", [2], indirect=True)
def test_client_id_in_use_waits_and_retries_the_same_id(sim: GatewaySimulator, tmp_path: Path) -> None:
    squatter = IB()
    squatter.connect("127.0.0.1", sim.port, clientId=CLIENT_ID, readonly=True, timeout=5)
    try:
        settings = settings_for(sim, tmp_path, client_id_in_use_wait_s=0.3, connect_timeout_s=1.0)
        streamer = IBPositionStreamer()
        streamer.ensure_started(settings, clock=sim.clock.now)
        wait_for(lambda: "326" in str(streamer.status().connection.last_error), 10, "error 326 reported")
        assert not streamer.status().connection.connected
    finally:
        squatter.disconnect()
    wait_for(lambda: streamer.status().connection.connected, 15, "connect once the id is free")
    streamer.stop()
    start_api_ids = {r.get("client_id") for r in sim.requests()}
    assert start_api_ids <= {CLIENT_ID, None}


def test_faults_recover_and_spool_holds_everything_sent_while_connected(sim: GatewaySimulator, tmp_path: Path) -> None:
    settings = settings_for(
        sim,
        tmp_path,
        heartbeat_s=1.0,
        probe_timeout_s=0.5,
        circuit_failures=2,
        circuit_cooldown_s=0.5,
        client_id_in_use_wait_s=0.3,
    )
    streamer = IBPositionStreamer()
    streamer.ensure_started(settings, clock=sim.clock.now)
    wait_for(lambda: streamer.status().connection.connected, 10, "connection")
    time.sleep(1.0)
    blackouts: list[tuple[float, float]] = []  # wall-time windows where a fault may eat messages in flight

    # A malformed frame and a truncated message: logged, counted, dropped; the connection stays up.
    before = streamer.status().counters.malformed_messages
    sim.send_malformed_frame()
    sim.send_truncated_message()
    wait_for(lambda: streamer.status().counters.malformed_messages >= before + 2, 5, "malformed messages counted")
    assert streamer.status().connection.connected and streamer.status().connection.reconnects == 0

    # 1100 then 1101: farm connectivity tracked; data lost -> everything resubscribed on the same connection.
    pnl_requests = sum(1 for r in sim.requests() if r["msg_id"] == 94)
    sim.send_error(1100, "Connectivity between IB and Trader Workstation has been lost.")
    wait_for(lambda: not streamer.status().connection.ib_farm_connected, 5, "1100 handled")
    sim.send_error(1101, "Connectivity restored - data lost.")
    wait_for(lambda: streamer.status().connection.ib_farm_connected, 5, "1101 handled")
    wait_for(lambda: sum(1 for r in sim.requests() if r["msg_id"] == 94) >= 2 * pnl_requests, 5, "resubscribed")
    assert streamer.status().connection.reconnects == 0

    # The gateway drops the connection: reconnect.
    t = time.time()
    sim.disconnect_all()
    wait_for(
        lambda: streamer.status().connection.reconnects >= 1 and streamer.status().connection.connected, 10, "reconnect"
    )
    blackouts.append((t - 0.5, time.time() + 0.5))

    # The gateway stalls: heartbeat probe unanswered -> reconnect.
    t = time.time()
    before = streamer.status().connection.reconnects
    sim.stall_output(4.0)
    wait_for(
        lambda: streamer.status().connection.reconnects > before and streamer.status().connection.connected,
        15,
        "heartbeat reconnect",
    )
    blackouts.append((t - 0.5, t + 5.0))

    # Refused reconnects: the circuit opens, then a half-open probe closes it once the gateway is back.
    t = time.time()
    before = streamer.status().connection.reconnects
    sim.refuse_connections(2.5)
    sim.disconnect_all()
    states = set()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        status = streamer.status()
        states.add(status.connection.circuit_state)
        if status.connection.reconnects > before and status.connection.connected:
            break
        time.sleep(0.02)
    assert "open" in states
    assert streamer.status().connection.connected and streamer.status().connection.circuit_state == "closed"
    assert streamer.status().connection.connect_failures >= 2
    blackouts.append((t - 0.5, time.time() + 0.5))

    time.sleep(1.5)
    stop_wall = time.time()
    streamer.stop()

    rows = spooled_positions(settings.spool_path)

    def connected_window(entry: dict[str, object]) -> bool:
        wall = float(entry["wall_time"])  # type: ignore[arg-type]
        return wall < stop_wall - 1.0 and not any(a <= wall <= b for a, b in blackouts)

    sent = list(sim.truth["sent"])
    checked = [e for e in sent if e["client_id"] == CLIENT_ID and connected_window(e)]
    assert len(checked) > 50
    assert missing_from_spool(sent, rows, option_con_ids(sim), CLIENT_ID, keep=connected_window) == []
    assert all(r.con_id != 1 for r in rows)  # the truncated row never became an event
    # After each reconnect the position snapshot is resent; only real changes became rows.
    position_states = {
        (e["account"], e["con_id"], e["position"], e["average_cost"])
        for e in sent
        if e["kind"] == "position" and e["client_id"] == CLIENT_ID and e["con_id"] in option_con_ids(sim)
    }
    assert 0 < sum(1 for r in rows if r.source == "position") <= len(position_states)
    assert streamer.status().counters.conversion_errors == 0


def test_unusable_home_is_a_clear_error_at_start(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where V6_HOME should be a directory")
    streamer = IBPositionStreamer()
    with pytest.raises(RuntimeError, match="not-a-dir"):
        streamer.ensure_started(StreamerSettings(port=1, home=blocker))
    assert not streamer.running


CLOSING_SCENARIO = """
name: closing
seed: 1
clock: {start: "2025-03-04T10:00:00-05:00", speed: 60}
accounts: [{id: DU1}, {id: DU2}]
underlyings: [{symbol: SPY, spot: 590.0, vol: 0.18}]
contracts:
  - {con_id: 1001, symbol: SPY, sec_type: OPT, expiry: "20250321", strike: 590, right: C}
  - {con_id: 1002, symbol: SPY, sec_type: OPT, expiry: "20250321", strike: 580, right: P}
positions:
  - {account: DU1, con_id: 1001, qty: 1, avg_cost: 1500.0}
  - {account: DU2, con_id: 1001, qty: 2, avg_cost: 1400.0}
events:
  # an open and its close a simulated minute later in DU2 (not the portfolio account), then a full close of
  # DU2's other position
  - {kind: trade, after: 120, account: DU2, con_id: 1002, qty: 3, price: 7.0, commission: 1.0}
  - {kind: trade, after: 180, account: DU2, con_id: 1002, qty: -3, price: 7.5, commission: 1.0}
  - {kind: trade, after: 240, account: DU2, con_id: 1001, qty: -2, price: 16.0, commission: 1.3}
"""


def test_pnl_single_follows_opens_and_closes_and_keeps_the_closing_realized_pnl(tmp_path: Path) -> None:
    import yaml

    from v6_assets.gateway_sim import parse_scenario

    scenario = parse_scenario(yaml.safe_load(CLOSING_SCENARIO))
    with GatewaySimulator(scenario, port=0).running() as sim:
        settings = settings_for(sim, tmp_path, portfolio_rotation_s=1000.0)  # DU2 is never the portfolio account
        streamer = IBPositionStreamer()
        streamer.ensure_started(settings, clock=sim.clock.now)
        wait_for(
            lambda: streamer.status().subscriptions.pnl_subscriptions == 2, 10, "PnL-single for both open positions"
        )
        assert streamer.status().subscriptions.portfolio_account == "DU1"
        wait_for(lambda: sim.clock.now() >= scenario.clock.start + timedelta(seconds=260), 20, "the trades")
        wait_for(lambda: streamer.status().subscriptions.pnl_subscriptions == 1, 15, "closed lines dropped")
        streamer.stop()
        sent = [e for e in sim.truth["sent"] if e["client_id"] == CLIENT_ID and e["kind"] == "pnl_single"]
        cancels = [r for r in sim.requests() if r["msg_id"] == 95]
        assert sim.order_violations() == 0
    rows = spooled_positions(settings.spool_path)
    for con_id in (1001, 1002):
        closing = [e for e in sent if e["account"] == "DU2" and e["con_id"] == con_id and e["position"] == 0]
        assert closing, f"the simulator sent no closing PnL-single for DU2/{con_id}"
        last = [r for r in rows if (r.account, r.con_id) == ("DU2", con_id)][-1]
        assert last.position == 0.0
        assert last.ib_realized_pnl == closing[-1]["realized_pnl"] != 0.0
    assert len(cancels) == 2
    assert [r.position for r in rows if (r.account, r.con_id) == ("DU1", 1001)][-1] == 1.0


def test_a_refusing_spool_bounds_memory_and_the_recovery_resyncs_every_position(
    sim: GatewaySimulator, tmp_path: Path
) -> None:
    settings = settings_for(sim, tmp_path, spool_max_held=40)
    streamer = IBPositionStreamer()
    streamer.ensure_started(settings, clock=sim.clock.now)
    wait_for(lambda: streamer.status().spool.written > 0, 20, "first updates spooled")
    with Spool(settings.spool_path) as spool:
        spool.fence("test: refuse writes like a full disk")
        wait_for(lambda: streamer.status().spool.dropped_positions + streamer.status().spool.dropped_greeks > 0, 30,
                 "updates shed while the spool refuses writes")  # fmt: skip
        status = streamer.status()
        assert status.spool.pending <= 40 and status.spool.error and "fenced" in status.spool.error
        run = streamer._run
        assert run is not None and run._publisher is not None
        known = run._publisher.merger.known_keys()
        reconnects = status.connection.reconnects
        recovered_at = spool.last_offset()
        spool.start_epoch(0)  # the spool takes writes again
    wait_for(lambda: streamer.status().spool.error is None, 10, "spool writes resume")
    wait_for(lambda: streamer.status().connection.reconnects > reconnects, 20, "the resync reconnect")
    with Spool(settings.spool_path) as spool:
        after = [r.event for r in spool.read(recovered_at, 10_000_000) if isinstance(r.event, PositionUpdate)]
    # Every position known when the spool recovered has its current state spooled again.
    assert known <= {(u.account, u.con_id) for u in after}
    streamer.stop()
