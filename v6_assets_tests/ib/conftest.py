from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from v6_assets.contracts.streams import GreeksUpdate, PositionUpdate
from v6_assets.ib.streamer import discard_process_streamer

T0 = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)


def position_update(seq: int, con_id: int = 1001, account: str = "DU1", position: float | None = 2.0) -> PositionUpdate:
    return PositionUpdate(
        account=account,
        con_id=con_id,
        symbol="SPX",
        sec_type="OPT",
        expiry=date(2025, 3, 21),
        strike=5800.0,
        right="C",
        multiplier=100.0,
        currency="USD",
        exchange="SMART",
        trading_class="SPXW",
        local_symbol="SPXW  250321C05800000",
        position=position,
        average_cost=1100.0,
        market_price=12.5 + seq / 100,
        market_value=None,
        unrealized_pnl=300.0,
        realized_pnl=None,
        ib_daily_pnl=float(seq),
        ib_unrealized_pnl=None,
        ib_realized_pnl=None,
        ib_value=2500.0,
        source="pnl_single",
        seq=seq,
        received_at=T0,
    )


def greeks_update(seq: int, con_id: int = 1001) -> GreeksUpdate:
    return GreeksUpdate(con_id, 13, 0.5, 0.01, None, -0.1, 0.2, 5800.0, 12.5, seq, T0)


@pytest.fixture(autouse=True)
def no_streamer_leak() -> Iterator[None]:
    yield
    discard_process_streamer()
