"""Benchmark "blast": portfolio / PnL-single updates as fast as the sockets accept (not recorded as truth)."""

from __future__ import annotations

import asyncio

from v6_assets.gateway_sim import wire
from v6_assets.gateway_sim.book import BookPosition
from v6_assets.gateway_sim.connection import ClientConnection
from v6_assets.gateway_sim.protocol import Out
from v6_assets.gateway_sim.state import MarketState, PositionKey
from v6_assets.gateway_sim.transport import ClientRegistry


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


async def blast(state: MarketState, clients: ClientRegistry, messages: int, batch: int = 256) -> int:
    """Send ``messages`` portfolio / PnL-single updates round-robin over the book as fast as sockets accept.

    Portfolio rows go to each client subscribed to the position's account, PnL-single to each matching
    subscription. Values move (the mark steps by 0.01 per round) so every message differs. Frames are written
    in batches of ``batch`` positions (one socket write each), with flow control. Returns the number written.
    """
    positions = [p for p in state.book.values() if p.qty]
    base_marks = [state.quote(p.contract).price for p in positions]
    templates = _Templates(positions)
    written = 0
    rnd = 0
    while written < messages:
        rnd += 1
        ready = clients.ready()
        if not ready or not positions:
            return written
        # per client, once per round: its templates, (account, con_id) -> PnL-single req ids, its pending frames
        routes: list[
            tuple[
                ClientConnection,
                list[wire.FrameTemplate],
                wire.FrameTemplate | None,
                dict[PositionKey, list[int]],
                list[bytes],
            ]
        ] = []
        for client in ready:
            if client.encoder is None:
                continue
            by_key: dict[PositionKey, list[int]] = {}
            for req_id, key in client.pnl_single_subs.items():
                by_key.setdefault(key, []).append(req_id)
            portfolio, pnl_single = templates.of(client.encoder)
            routes.append((client, portfolio, pnl_single, by_key, []))
        before = written
        step = 0.01 * (rnd % 100)
        for index, (pos, base) in enumerate(zip(positions, base_marks, strict=True)):
            mark = round(base + step, 4)
            mv = pos.qty * mark * pos.contract.multiplier
            unrealized = mv - pos.average_cost * pos.qty
            realized = state.realized_wire(pos)
            for client, portfolio, pnl_single, by_key, frames in routes:
                if client.account_sub == pos.account:
                    frames.append(
                        portfolio[index].encode(pos.qty, mark, mv, pos.average_cost, unrealized, realized, pos.account)
                    )
                if pnl_single is None:
                    continue
                for req_id in by_key.get(pos.key, ()):
                    # daily PnL is sent as the unrealized: benchmark traffic, only the volume matters
                    frames.append(pnl_single.encode(req_id, pos.qty, unrealized, unrealized, pos.realized_total, mv))
            if (index + 1) % batch == 0 or index == len(positions) - 1 or written >= messages:
                for client, _, _, _, frames in routes:
                    if frames:
                        written += len(frames)
                        if not client.can_write.is_set():
                            await client.can_write.wait()
                        client.write_raw(b"".join(frames), count=len(frames))
                        frames.clear()
                if written >= messages:
                    break
        if written == before:
            return written  # nobody subscribed to anything we hold
        await asyncio.sleep(0)
    return written
