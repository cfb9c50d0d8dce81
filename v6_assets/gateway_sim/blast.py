"""Benchmark "blast": portfolio / PnL-single updates (optionally with executions, commission reports and account
values mixed in) as fast as the sockets accept (not recorded as truth).

The frames can be built before they are sent (``prepare`` then ``send``): the load generator then only writes bytes
from memory, so a client is measured against its own limit, not against the simulator's encoding speed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

from v6_assets.gateway_sim import wire
from v6_assets.gateway_sim.book import BookPosition
from v6_assets.gateway_sim.connection import ClientConnection
from v6_assets.gateway_sim.protocol import UNSET_DOUBLE, Out
from v6_assets.gateway_sim.state import MarketState, PositionKey
from v6_assets.gateway_sim.transport import ClientRegistry

# With ``mix``: at every MIX_EVERY-th position of a round, one live execDetails, its commissionReport and one account
# value (NetLiquidation, a new value each time) per client that takes them.
MIX_EVERY = 40
BLAST_PERM_BASE = 0x7B000000  # perm ids of blast fills (apart from the timeline's)


class _Templates:
    """Per encoder (negotiated version): each position's portfolio row with its fixed contract part pre-encoded."""

    def __init__(self, positions: list[BookPosition]) -> None:
        self._positions = positions
        self._by_encoder: dict[int, tuple[list[wire.FrameTemplate], wire.FrameTemplate | None]] = {}

    def of(self, encoder: wire.WireEncoder) -> tuple[list[wire.FrameTemplate], wire.FrameTemplate | None]:
        """(portfolio templates by position, the PnL-single template if the version has PnL) of ``encoder``."""
        found = self._by_encoder.get(encoder.server_version)
        if found is None:
            portfolio = [
                encoder.template(Out.PORTFOLIO_VALUE, **wire.contract_fields(p.contract, p.contract.primary_exchange))
                for p in self._positions
            ]
            pnl_single = encoder.template(Out.PNL_SINGLE) if encoder.has(Out.PNL_SINGLE) else None
            found = portfolio, pnl_single
            self._by_encoder[encoder.server_version] = found
        return found


@dataclass
class PreparedRoute:
    """One client's part of a blast: its templates, its PnL-single req ids by position, its pending frames."""

    client: ClientConnection
    portfolio: list[wire.FrameTemplate]
    pnl_single: wire.FrameTemplate | None
    by_key: dict[PositionKey, list[int]]
    frames: list[bytes] = field(default_factory=list)
    chunks: list[tuple[bytes, int]] = field(default_factory=list)  # (bytes, messages) ready to write


def _mixed_frames(route: PreparedRoute, pos: BookPosition, mark: float, n: int, now: datetime) -> list[bytes]:
    """One live fill of ``pos`` with its commission report, and one account value of its account when the client
    subscribed it (reqAccountUpdatesMulti); ``n`` makes the exec id and the value unique."""
    encoder = route.client.encoder
    assert encoder is not None
    c = pos.contract
    exec_id = f"{BLAST_PERM_BASE + n:08x}.blast.{n:06d}.01"
    exchange = c.exchange if c.exchange != "SMART" else "CBOE"
    frames = [
        encoder.encode(
            Out.EXECUTION_DATA, req_id=-1, order_id=0, **wire.contract_fields(c, c.exchange), exec_id=exec_id,
            time=wire.execution_time(now), account=pos.account, exec_exchange=exchange, side="BOT", shares=1.0,
            price=mark, perm_id=BLAST_PERM_BASE + n, client_id=0, liquidation=0, cum_qty=1.0, avg_price=mark,
            order_ref="", ev_rule="", ev_multiplier=0.0, model_code="", last_liquidity=2, pending_price_revision=0,
        ),
        encoder.encode(
            Out.COMMISSION_REPORT, exec_id=exec_id, commission=0.65, currency=c.currency, realized_pnl=UNSET_DOUBLE,
            yield_=UNSET_DOUBLE, yield_redemption_date=0,
        ),
    ]  # fmt: skip
    for req_id, (account, _model_code) in route.client.account_multi_subs.items():
        if account == pos.account:
            frames.append(
                encoder.encode(
                    Out.ACCOUNT_UPDATE_MULTI,
                    req_id=req_id,
                    account=account,
                    model_code="",
                    key="NetLiquidation",
                    value=f"{1_000_000 + n:.2f}",
                    currency=c.currency,
                )
            )
    return frames


def prepare(
    state: MarketState, clients: ClientRegistry, messages: int, batch: int = 256, mix: bool = False
) -> list[PreparedRoute]:
    """The frames of a blast of ``messages``, per client, in socket-write chunks of ``batch`` positions.

    Portfolio rows go to each client subscribed to the position's account, PnL-single to each matching
    subscription; with ``mix`` also fills, commissions and account values (see ``_mixed_frames``). Values move (the
    mark steps by 0.01 per round) so every message differs."""
    positions = [p for p in state.book.values() if p.qty]
    base_marks = [state.quote(p.contract).price for p in positions]
    templates = _Templates(positions)
    routes: list[PreparedRoute] = []
    for client in clients.ready():
        if client.encoder is None:
            continue
        by_key: dict[PositionKey, list[int]] = {}
        for req_id, key in client.pnl_single_subs.items():
            by_key.setdefault(key, []).append(req_id)
        portfolio, pnl_single = templates.of(client.encoder)
        routes.append(PreparedRoute(client, portfolio, pnl_single, by_key))
    if not routes or not positions:
        return routes
    now = datetime.now(UTC)
    written = rnd = mixed = 0
    while written < messages:
        rnd += 1
        before = written
        step = 0.01 * (rnd % 100)
        for index, (pos, base) in enumerate(zip(positions, base_marks, strict=True)):
            mark = round(base + step, 4)
            mv = pos.qty * mark * pos.contract.multiplier
            unrealized = mv - pos.average_cost * pos.qty
            realized = state.realized_wire(pos)
            mix_now = mix and index % MIX_EVERY == 0
            if mix_now:
                mixed += 1
            for route in routes:
                if route.client.account_sub == pos.account:
                    route.frames.append(
                        route.portfolio[index].encode(
                            pos.qty, mark, mv, pos.average_cost, unrealized, realized, pos.account
                        )
                    )
                if mix_now:
                    route.frames.extend(_mixed_frames(route, pos, mark, mixed, now))
                if route.pnl_single is None:
                    continue
                for req_id in route.by_key.get(pos.key, ()):
                    # daily PnL is sent as the unrealized: benchmark traffic, only the volume matters
                    route.frames.append(
                        route.pnl_single.encode(req_id, pos.qty, unrealized, unrealized, pos.realized_total, mv)
                    )
            if (index + 1) % batch == 0 or index == len(positions) - 1:
                for route in routes:
                    if route.frames:
                        written += len(route.frames)
                        route.chunks.append((b"".join(route.frames), len(route.frames)))
                        route.frames.clear()
                if written >= messages:
                    break
        if written == before:
            break  # nobody subscribed to anything we hold
    return routes


async def send(routes: list[PreparedRoute]) -> int:
    """Write prepared chunks round-robin over the clients, with flow control. Returns the messages written."""
    written = 0
    longest = max((len(r.chunks) for r in routes), default=0)
    for i in range(longest):
        for route in routes:
            if i < len(route.chunks) and not route.client.closed:
                chunk, count = route.chunks[i]
                if not route.client.can_write.is_set():
                    await route.client.can_write.wait()
                route.client.write_raw(chunk, count=count)
                written += count
        await asyncio.sleep(0)
    return written


async def blast(state: MarketState, clients: ClientRegistry, messages: int, batch: int = 256) -> int:
    """Build and send a blast of ``messages`` portfolio / PnL-single updates. Returns the number written."""
    return await send(prepare(state, clients, messages, batch))
