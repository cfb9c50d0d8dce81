"""The timeline driver: advances simulated time and runs, in time order, events, session closes and EOD cuts.

Each real-time step of ``clock.tick_real_s`` processes every timeline event, session close (expiries, then a final
portfolio + PnL refresh at the close mark, recorded as the EOD ground truth) and EOD cut (daily reset) that fell
inside the step, then sends the periodic streams whose simulated cadence elapsed. At speeds above 60 nights and
weekends are skipped (the clock jumps to 30 minutes before the next open once the cut is processed), unless
``clock.skip_nights`` says otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from v6_assets.gateway_sim import executions
from v6_assets.gateway_sim.clock import SimClock
from v6_assets.gateway_sim.faults import FaultInjector
from v6_assets.gateway_sim.market import SessionTimes
from v6_assets.gateway_sim.publisher import Publisher
from v6_assets.gateway_sim.scenario_model import TimelineEvent
from v6_assets.gateway_sim.state import MarketState
from v6_assets.gateway_sim.truth import TruthRecorder

log = logging.getLogger(__name__)

SKIP_NIGHTS_ABOVE_SPEED = 60.0
PRE_OPEN = timedelta(minutes=30)
# Order of items due at the same instant: a session close, then timeline events, then the EOD cut.
CLOSE_FIRST, EVENT_SECOND, CUT_LAST = 0, 1, 2
# Where a fast clock holds (``ClockSpec.settle_real_s``): after a close (its refresh) and just before an EOD cut.
HOLD_AFTER_CLOSE = timedelta(minutes=1)
HOLD_BEFORE_CUT = timedelta(seconds=1)


class TimelineDriver:
    """Owns simulated time's progress (``state.now``) and everything scheduled on it."""

    def __init__(
        self,
        state: MarketState,
        clock: SimClock,
        publisher: Publisher,
        recorder: TruthRecorder,
        faults: FaultInjector,
    ) -> None:
        self.state = state
        self.scenario = state.scenario
        self.clock = clock
        self.publisher = publisher
        self.recorder = recorder
        self.faults = faults
        self.timeline_done = threading.Event()
        self.stepped = asyncio.Event()  # set after every step (waiters re-check their condition)
        self.sessions_closed: list[str] = []
        self._event_index = 0
        start = self.scenario.clock.start
        cal = state.market.calendar
        self._session_index = max(cal.session_index_at(start), 0)
        # Sessions whose close/cut are before the start are already done.
        self._close_done = {i for i, s in enumerate(cal.sessions) if s.close <= start}
        self._cut_done = {i for i, s in enumerate(cal.sessions) if s.cut <= start}
        self._stop_at_next_boundary(start)

    @property
    def skip_nights(self) -> bool:
        """Explicit scenario setting, else only while the clock runs fast (not once it went live at speed 1)."""
        setting = self.scenario.clock.skip_nights
        if setting is not None:
            return bool(setting)
        return self.clock.speed > SKIP_NIGHTS_ABOVE_SPEED

    # --- scheduled items
    def _apply_event(self, event: TimelineEvent) -> None:
        p = event.params
        kind = event.kind
        state = self.state
        if kind == "trade":
            price = p["price"]
            if price is None:
                price = state.quote(self.scenario.contracts[p["con_id"]]).price
            held = state.book.get((p["account"], p["con_id"]))
            realized_before = held.realized_total if held is not None else 0.0
            closing = held is not None and held.qty != 0 and (held.qty > 0) != (p["qty"] > 0)
            pos = state.trade(p["account"], p["con_id"], p["qty"], price, p["commission"])
            self.publisher.position_changed(pos)
            realized = pos.realized_total - realized_before if closing else None
            execution = state.executions.record(p["account"], pos.contract, p["qty"], price, p["commission"],
                                                realized, state.now, p.get("commission_delay_s", 0.0))  # fmt: skip
            pos.fills_session[-1].exec_id = execution.exec_id  # the statement reports the same id
            self._publish_fill(execution)
        elif kind == "correct_execution":
            execution, old_price = state.executions.correct(p["account"], p["con_id"], p["price"], state.now)
            pos = state.correct_fill(p["account"], p["con_id"], old_price, p["price"])
            for fill in pos.fills_session:
                if fill.exec_id.startswith(execution.exec_base + "."):
                    fill.exec_id = execution.exec_id
            self.publisher.position_changed(pos)
            self._publish_fill(execution)
        elif kind == "underlying":
            state.market.override_underlying(p["symbol"], state.now, p["price"])
        elif kind == "mark":
            if p["price"] is None:
                state.market.mark_overrides.pop(p["con_id"], None)
            else:
                state.market.mark_overrides[p["con_id"]] = p["price"]
        elif kind == "expire":
            self._expire(p["con_ids"])
        elif kind in ("exercise", "assign"):
            # IB reports it as position changes only (the option, then the stock leg): no execDetails
            for pos in state.exercise(p["account"], p["con_id"], p["contracts"], "Ex" if kind == "exercise" else "A"):
                self.publisher.position_changed(pos)
        elif kind == "disconnect":
            self.faults.disconnect_all()
        elif kind == "refuse":
            self.faults.refuse_connections(p["seconds"])
        elif kind == "stall":
            self.faults.stall_output(p["seconds"])
        elif kind == "error":
            self.faults.send_error(p["code"], p["message"], p["req_id"])
        elif kind == "malformed":
            self.faults.send_malformed_frame()
        elif kind == "truncated":
            self.faults.send_truncated_message()
        elif kind == "reset":
            state.paused.add("reset")
            self.faults.reset_start()
            self.recorder.health(None, "reset_start", data_lost=p["data_lost"])
        elif kind == "reset_end":
            state.paused.discard("reset")
            self.faults.reset_end(p["data_lost"])
            self.recorder.health(None, "reset_end", data_lost=p["data_lost"])
        elif kind == "competing_session":
            state.paused.add("competing_session")
            self.faults.competing_session()
            self.recorder.health(None, "competing_session_start")
        elif kind == "competing_session_end":
            state.paused.discard("competing_session")
            self.recorder.health(None, "competing_session_end")
        elif kind == "farm_down":
            state.paused.add("farm_down")
            self.faults.farm_down()
            self.recorder.health(None, "farm_down_start")
        elif kind == "farm_down_end":
            state.paused.discard("farm_down")
            self.faults.farm_up()
            self.recorder.health(None, "farm_down_end")
        elif kind == "restart":
            self.faults.restart(p["seconds"])
            self.recorder.health(None, "restart", refuse_seconds=p["seconds"])

    def _publish_fill(self, execution: executions.SimExecution) -> None:
        # during a reset nothing reaches the clients: the fill comes back with the next reqExecutions
        if "reset" not in self.state.paused:
            executions.publish_fill(self.publisher.clients.ready(), execution)

    def _expire(self, con_ids: list[int] | None, session: SessionTimes | None = None) -> None:
        for pos in self.state.expire(con_ids, session.day if session is not None else None):
            self.publisher.position_changed(pos)

    def _stop_at_next_boundary(self, now: datetime) -> None:
        """Hold simulated time at the next close (+1 min) or EOD cut (-1 s) after ``now`` (see ``settle_real_s``)."""
        sessions = self.state.market.calendar.sessions
        boundaries = [s.close + HOLD_AFTER_CLOSE for i, s in enumerate(sessions) if i not in self._close_done]
        boundaries += [s.cut - HOLD_BEFORE_CUT for i, s in enumerate(sessions) if i not in self._cut_done]
        ahead = [b for b in boundaries if b > now]
        if ahead:
            self.clock.stop_at(min(ahead))

    def _session_close(self, session: SessionTimes) -> None:
        if self.scenario.nastiness.auto_expire:
            self._expire(None, session)
        self.publisher.send_close_refresh()
        for pos in self.state.book.values():
            if pos.contract.is_option or pos.delivered:
                self.recorder.eod(session, pos)
        for account in self.state.accounts:
            self.recorder.account_eod(session, account)
        self.sessions_closed.append(session.day.isoformat())
        self.recorder.flush_eod()

    def _next_item(self, until: datetime) -> tuple[datetime, Callable[[], None]] | None:
        """The earliest pending event / close / cut at or before ``until``."""
        candidates: list[tuple[datetime, int, Callable[[], None]]] = []
        events = self.scenario.events
        if self._event_index < len(events) and events[self._event_index].at <= until:
            event = events[self._event_index]

            def run_event() -> None:
                self._event_index += 1
                self._apply_event(event)

            candidates.append((event.at, EVENT_SECOND, run_event))
        cal = self.state.market.calendar
        i = self._session_index
        while i < len(cal.sessions) and i in self._cut_done:
            i += 1
        self._session_index = i
        if i < len(cal.sessions):
            s = cal.sessions[i]
            if i not in self._close_done and s.close <= until:

                def run_close() -> None:
                    self._close_done.add(i)
                    self._session_close(s)

                candidates.append((s.close, CLOSE_FIRST, run_close))
            elif i in self._close_done and s.cut <= until:

                def run_cut() -> None:
                    self._cut_done.add(i)
                    self.state.session_cut()

                candidates.append((s.cut, CUT_LAST, run_cut))
        if not candidates:
            return None
        at, _, fn = min(candidates, key=lambda c: (c[0], c[1]))
        return at, fn

    def advance(self, until: datetime) -> None:
        """Run everything due up to ``until`` in time order, moving ``state.now`` along."""
        while True:
            item = self._next_item(until)
            if item is None:
                break
            at, fn = item
            self.state.now = max(self.state.now, at)
            fn()
        self.state.now = max(self.state.now, until)
        if self._event_index >= len(self.scenario.events):
            self.timeline_done.set()

    def _maybe_skip_night(self) -> None:
        if not self.skip_nights:
            return
        cal = self.state.market.calendar
        now = self.state.now
        i = cal.session_index_at(now)
        if i < 0 or i not in self._cut_done:
            return
        next_open = cal.next_open_after(now)
        if next_open is None:
            return
        target = next_open - PRE_OPEN
        events = self.scenario.events
        if self._event_index < len(events):
            target = min(target, events[self._event_index].at)
        if target > now:
            self.clock.jump_to(target)

    def step(self) -> None:
        now = self.clock.now()
        if not self.clock.has_stop:
            self._stop_at_next_boundary(now)
        self.advance(now)
        if "reset" not in self.state.paused:
            executions.publish_due_commissions(self.publisher.clients.ready(), self.state.executions, self.state.now)
        self.publisher.send_due_streams()
        if self.clock.held_at_stop:
            # everything up to the stop is processed and sent: let the client take it in, then go on
            self.clock.release(self.scenario.clock.settle_real_s)
        self._maybe_skip_night()
        self.stepped.set()
        self.recorder.flush_sent()

    async def run(self) -> None:
        """The driver task: one step per ``clock.tick_real_s`` of real time until cancelled."""
        tick = self.scenario.clock.tick_real_s
        while True:
            try:
                self.step()
            except Exception:
                log.exception("gateway simulator step failed")
                raise
            await asyncio.sleep(tick)
