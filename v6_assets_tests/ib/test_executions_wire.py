"""execDetails and commissionReport as the simulator encodes them, decoded by ib_async's own decoder at every
version it speaks, and checked against the field rules of IB's official decoder (``processExecutionDataMsg``) for the
versions below ib_async's; then the tracker's rules (dedup, corrections, commission join) and its bad input."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from ib_async import IB
from ib_async.decoder import Decoder

from v6_assets.contracts.streams import ExecutionUpdate
from v6_assets.gateway_sim import protocol, wire
from v6_assets.gateway_sim.executions import ExecutionLog, SimExecution
from v6_assets.gateway_sim.protocol import UNSET_DOUBLE, Out
from v6_assets.gateway_sim.scenario_model import ContractSpec
from v6_assets.ib.executions import ExecutionTracker, split_exec_id

AT = datetime(2025, 3, 3, 15, 1, 2, tzinfo=UTC)
CONTRACT = ContractSpec(con_id=11, symbol="XYZ", sec_type="OPT", expiry_wire="20250321", expiry_at=AT, strike=100.0,
                        right="C", multiplier=100.0, multiplier_wire="100", currency="USD", trading_class="XYZ",
                        exchange="SMART", primary_exchange="CBOE", local_symbol="XYZ 250321C00100000")  # fmt: skip


def _execution(commission: float = 0.65, realized: float | None = None) -> SimExecution:
    log = ExecutionLog()
    return log.record("DU1", CONTRACT, -3.0, 2.35, commission, realized, AT, 0.0)


def _frames(version: int, execution: SimExecution) -> tuple[list[str], list[str]]:
    encoder = wire.encoder_for(version)
    c = execution.contract
    exec_frame = encoder.texts(Out.EXECUTION_DATA, dict(
        req_id=5, order_id=0, **wire.contract_fields(c, c.exchange), exec_id=execution.exec_id,
        time=wire.execution_time(execution.time), account=execution.account, exec_exchange=execution.exchange,
        side=execution.side, shares=execution.shares, price=execution.price, perm_id=execution.perm_id, client_id=0,
        liquidation=0, cum_qty=execution.shares, avg_price=execution.price, order_ref="", ev_rule="",
        ev_multiplier=0.0, model_code="", last_liquidity=2, pending_price_revision=0))  # fmt: skip
    realized = UNSET_DOUBLE if execution.realized_pnl is None else execution.realized_pnl
    commission_frame = encoder.texts(Out.COMMISSION_REPORT, dict(
        exec_id=execution.exec_id, commission=execution.commission, currency="USD", realized_pnl=realized,
        yield_=UNSET_DOUBLE, yield_redemption_date=0))  # fmt: skip
    return exec_frame, commission_frame


def _decode_with_ib_async(version: int, frames: list[list[str]]) -> list[ExecutionUpdate]:
    ib = IB()
    emitted: list[ExecutionUpdate] = []
    tracker = ExecutionTracker((), lambda: AT, emitted.append)
    tracker.attach(ib)
    decoder = Decoder(ib.wrapper, version)
    for fields in frames:
        decoder.interpret(fields)
    assert tracker.counters.conversion_errors == 0
    return emitted


@pytest.mark.parametrize("version", [157, 163, 176, 177, 178])
def test_ib_async_decodes_the_fill_and_its_commission(version: int) -> None:
    execution = _execution(realized=-12.5)
    exec_frame, commission_frame = _frames(version, execution)
    first, joined = _decode_with_ib_async(version, [exec_frame, commission_frame])
    assert (first.exec_id, first.account, first.con_id, first.side) == (execution.exec_id, "DU1", 11, "SLD")
    assert (first.shares, first.quantity, first.price, first.perm_id) == (3.0, -3.0, 2.35, execution.perm_id)
    assert first.exec_time == AT and first.exchange == "CBOE" and first.multiplier == 100.0
    assert first.commission is None  # not known before its report
    assert (joined.commission, joined.commission_currency, joined.realized_pnl) == (0.65, "USD", -12.5)


def test_opening_fill_keeps_ib_unset_realized_pnl_as_none() -> None:
    _, joined = _decode_with_ib_async(178, list(_frames(178, _execution(realized=None))))
    assert joined.commission == 0.65 and joined.realized_pnl is None  # not ib_async's 0.0


def _official_field_count(version: int) -> int:
    """Fields of execDetails after the message id by IB's official decoder (processExecutionDataMsg) at ``version``:
    the message's version field (10) below LAST_LIQUIDITY, req id, order id, the contract (11 at message version
    >= 10), 15 execution fields up to evMultiplier, modelCode from MODELS_SUPPORT, lastLiquidity from
    LAST_LIQUIDITY, pendingPriceRevision from PENDING_PRICE_REVISION."""
    count = (1 if version < protocol.MIN_VERSION_LAST_LIQUIDITY else 0) + 2 + 11 + 15
    count += version >= protocol.MIN_VERSION_MODELS_SUPPORT
    count += version >= protocol.MIN_VERSION_LAST_LIQUIDITY
    count += version >= protocol.MIN_VERSION_PENDING_PRICE_REVISION
    return count


@pytest.mark.parametrize("version", [100, 101, 102, 103, 135, 136, 156, 157, 177, 178])
def test_exec_details_layout_follows_the_official_decoder(version: int) -> None:
    exec_frame, commission_frame = _frames(version, _execution())
    assert exec_frame[0] == "11" and len(exec_frame) - 1 == _official_field_count(version)
    head = exec_frame[1:]
    if version < protocol.MIN_VERSION_LAST_LIQUIDITY:
        assert head[0] == "10"  # the message version: reqId (>= 7), multiplier (>= 9), tradingClass (>= 10)
        head = head[1:]
    # req id, order id, the contract (13), exec id, time, account, exchange, side, shares, price, ..., cumQty
    assert head[:3] == ["5", "0", "11"] and head[12] == "XYZ" and head[15:18] == ["DU1", "CBOE", "SLD"]
    # shares and cumQty: integers before FRACTIONAL_POSITIONS (the 9.x decoder reads them with int()), decimals after
    assert head[18] == "3" and head[23] == "3" and head[19] == "2.35"
    assert commission_frame[:2] == ["59", "1"] and len(commission_frame) == 8
    assert commission_frame[2:5] == [_execution().exec_id, "0.65", "USD"]


def test_exec_id_revision_split() -> None:
    assert split_exec_id("0000e0d5.6745c1a2.01.02") == ("0000e0d5.6745c1a2.01", 2)
    assert split_exec_id("noversion") == ("noversion", 1)


def _tracker() -> tuple[ExecutionTracker, list[ExecutionUpdate], IB, Decoder]:
    ib = IB()
    emitted: list[ExecutionUpdate] = []
    tracker = ExecutionTracker(("DU1",), lambda: AT, emitted.append)
    tracker.attach(ib)
    return tracker, emitted, ib, Decoder(ib.wrapper, 178)


def test_duplicates_corrections_and_late_commissions() -> None:
    tracker, emitted, _, decoder = _tracker()
    execution = _execution()
    exec_frame, commission_frame = _frames(178, execution)
    decoder.interpret(commission_frame)  # the commission first: held, not invented
    assert emitted == [] and tracker.counters.orphan_commissions == 1 and tracker.held_commissions == 1
    decoder.interpret(exec_frame)  # joins the held commission at once
    decoder.interpret(exec_frame)  # the re-request after a reconnect: a duplicate
    assert [e.commission for e in emitted] == [0.65] and tracker.counters.duplicates == 1
    execution.revision, execution.price = 2, 2.4  # a correction
    corrected_frame, _ = _frames(178, execution)
    decoder.interpret(corrected_frame)
    assert emitted[-1].exec_id.endswith(".02") and emitted[-1].price == 2.4
    assert emitted[-1].commission is None  # the corrected revision's own commission report follows
    execution.revision = 1
    decoder.interpret(_frames(178, execution)[0])  # the old revision again: ignored
    assert tracker.counters.superseded == 1 and len(emitted) == 2


def test_bad_executions_are_counted_never_emitted() -> None:
    tracker, emitted, _, decoder = _tracker()
    execution = _execution()
    exec_frame, _ = _frames(178, execution)
    unknown_contract = list(exec_frame)
    unknown_contract[3] = "0"  # conId 0: no contract to book it on
    decoder.interpret(unknown_contract)
    foreign = list(exec_frame)
    foreign[foreign.index("DU1")] = "DU9"
    decoder.interpret(foreign)
    bad_side = list(exec_frame)
    bad_side[bad_side.index("SLD")] = "XXX"
    decoder.interpret(bad_side)
    assert emitted == []
    assert tracker.counters.conversion_errors == 2 and tracker.counters.foreign_account_dropped == 1
