"""Deterministic market model: seeded random walks in trading time, Black-Scholes marks and greeks.

Underlyings move only during regular trading hours (09:30 ET to the close), on a fixed grid of ``walk_step_s``
trading seconds, so a price depends on the scenario, the seed and the simulated time only -- never on how often
the real-time loop happened to wake up. Outside regular hours every mark is the last close's (stale marks).
"""

from __future__ import annotations

import bisect
import math
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import numpy as np

from v6_assets import sessions
from v6_assets.gateway_sim.scenario_model import ContractSpec, Scenario

YEAR_SECONDS = 365.0 * 86_400.0
TRADING_YEAR_SECONDS = 252.0 * 6.5 * 3600.0
_CHUNK = 1024


@dataclass(frozen=True, slots=True)
class SessionTimes:
    day: date
    open: datetime  # UTC
    close: datetime  # UTC
    cut: datetime  # UTC (close + 15 min)


class TradingCalendar:
    """Sessions around the scenario window with open/close/cut instants (UTC), from ``v6_assets.sessions``."""

    def __init__(self, start: datetime, days: int = 400) -> None:
        first = sessions.previous_session(start.astimezone(sessions.NEW_YORK).date())
        last = start.date() + timedelta(days=days)
        self.sessions: list[SessionTimes] = []
        for day in sessions.sessions_between(first, last):
            cut = sessions.eod_cut(day)
            open_ = datetime.combine(day, time(9, 30), sessions.NEW_YORK).astimezone(UTC)
            self.sessions.append(SessionTimes(day, open_, cut - sessions.EOD_CUT_AFTER_CLOSE, cut))
        self._opens = [s.open for s in self.sessions]
        self.start = start
        # Trading seconds elapsed from ``start`` at the open of each session (prefix sums).
        self._rth_before: list[float] = []
        total = 0.0
        for s in self.sessions:
            self._rth_before.append(total)
            lo = max(s.open, start)
            if s.close > lo:
                total += (s.close - lo).total_seconds()

    def session_index_at(self, t: datetime) -> int:
        """Index of the last session that opened at or before ``t`` (-1 if none)."""
        return bisect.bisect_right(self._opens, t) - 1

    def in_rth(self, t: datetime) -> bool:
        i = self.session_index_at(t)
        return i >= 0 and t < self.sessions[i].close

    def rth_seconds(self, t: datetime) -> float:
        """Regular-trading-hours seconds between the scenario start and ``t``."""
        i = self.session_index_at(t)
        if i < 0:
            return 0.0
        s = self.sessions[i]
        lo = max(s.open, self.start)
        return self._rth_before[i] + max(0.0, (min(t, s.close) - lo).total_seconds())

    def pricing_time(self, t: datetime) -> datetime:
        """``t`` during regular hours, else the last close before it: marks are stale outside regular hours."""
        i = self.session_index_at(t)
        if i < 0:
            return self.sessions[0].close
        s = self.sessions[i]
        return t if t < s.close else s.close

    def session_of(self, day: date) -> SessionTimes:
        for s in self.sessions:
            if s.day == day:
                return s
        raise KeyError(day)

    def next_open_after(self, t: datetime) -> datetime | None:
        i = bisect.bisect_right(self._opens, t)
        return self._opens[i] if i < len(self._opens) else None


class RandomWalk:
    """Geometric random walk of one underlying on a grid of trading seconds, extended lazily and reproducibly."""

    def __init__(self, spot: float, vol: float, drift: float, step_s: float, seed: int, symbol: str) -> None:
        self._rng = np.random.Generator(np.random.PCG64([seed, zlib.crc32(symbol.encode())]))
        dt = step_s / TRADING_YEAR_SECONDS
        self._mu = (drift - 0.5 * vol * vol) * dt
        self._sigma = vol * math.sqrt(dt)
        self._step_s = step_s
        self._log_path: list[float] = [0.0]
        self.spot = spot
        self._overrides: list[tuple[int, float]] = []  # (grid index, price) sorted by index

    def _extend(self, index: int) -> None:
        while len(self._log_path) <= index:
            shocks = self._rng.standard_normal(_CHUNK)
            last = self._log_path[-1]
            for z in shocks:
                last += self._mu + self._sigma * float(z)
                self._log_path.append(last)

    def index(self, rth_seconds: float) -> int:
        return int(rth_seconds // self._step_s)

    def override(self, rth_seconds: float, price: float) -> None:
        """From this grid point on, the walk continues multiplicatively from ``price``."""
        idx = self.index(rth_seconds)
        self._overrides = [o for o in self._overrides if o[0] != idx]
        bisect.insort(self._overrides, (idx, price))

    def price(self, rth_seconds: float) -> float:
        idx = self.index(rth_seconds)
        self._extend(idx)
        base_idx, base_price = 0, self.spot
        pos = bisect.bisect_right(self._overrides, (idx, math.inf)) - 1
        if pos >= 0:
            base_idx, base_price = self._overrides[pos]
        return round(base_price * math.exp(self._log_path[idx] - self._log_path[base_idx]), 4)


@dataclass(frozen=True, slots=True)
class Greeks:
    price: float
    delta: float
    gamma: float
    vega: float  # per vol point
    theta: float  # per calendar day
    implied_vol: float
    und_price: float


def _norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _norm_pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def black_scholes(spot: float, strike: float, years: float, vol: float, rate: float, right: str) -> Greeks:
    """European option price and greeks (no dividends). At or past expiry: intrinsic value, delta 1/0."""
    call = right == "C"
    if years <= 0.0 or vol <= 0.0:
        intrinsic = max(spot - strike, 0.0) if call else max(strike - spot, 0.0)
        itm = intrinsic > 0.0
        delta = (1.0 if call else -1.0) if itm else 0.0
        return Greeks(intrinsic, delta, 0.0, 0.0, 0.0, vol, spot)
    sqrt_t = math.sqrt(years)
    d1 = (math.log(spot / strike) + (rate + 0.5 * vol * vol) * years) / (vol * sqrt_t)
    d2 = d1 - vol * sqrt_t
    discount = math.exp(-rate * years)
    pdf = _norm_pdf(d1)
    if call:
        price = spot * _norm_cdf(d1) - strike * discount * _norm_cdf(d2)
        delta = _norm_cdf(d1)
        theta_year = -spot * pdf * vol / (2 * sqrt_t) - rate * strike * discount * _norm_cdf(d2)
    else:
        price = strike * discount * _norm_cdf(-d2) - spot * _norm_cdf(-d1)
        delta = _norm_cdf(d1) - 1.0
        theta_year = -spot * pdf * vol / (2 * sqrt_t) + rate * strike * discount * _norm_cdf(-d2)
    gamma = pdf / (spot * vol * sqrt_t)
    vega = spot * pdf * sqrt_t / 100.0
    return Greeks(max(price, 0.0), delta, gamma, vega, theta_year / 365.0, vol, spot)


class Market:
    """Prices of every contract at a simulated time, deterministic for (scenario, seed)."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.scenario = scenario
        self.calendar = TradingCalendar(scenario.clock.start)
        self.walks = {
            u.symbol: RandomWalk(u.spot, u.vol, u.drift, scenario.clock.walk_step_s, seed, u.symbol)
            for u in scenario.underlyings.values()
        }
        self.mark_overrides: dict[int, float] = {}

    def underlying_price(self, symbol: str, t: datetime) -> float:
        return self.walks[symbol].price(self.calendar.rth_seconds(t))

    def override_underlying(self, symbol: str, t: datetime, price: float) -> None:
        self.walks[symbol].override(self.calendar.rth_seconds(t), price)

    def quote(self, contract: ContractSpec, t: datetime) -> Greeks:
        """Mark and greeks at ``t`` (stale outside regular hours); marks rounded to 4 decimals like IB's."""
        pricing_t = self.calendar.pricing_time(t)
        spot = self.underlying_price(contract.symbol, t)
        if not contract.is_option:
            return Greeks(spot, 1.0, 0.0, 0.0, 0.0, 0.0, spot)
        assert contract.expiry_at is not None
        years = max(0.0, (contract.expiry_at - pricing_t).total_seconds()) / YEAR_SECONDS
        vol = contract.vol or self.scenario.underlyings[contract.symbol].vol
        greeks = black_scholes(spot, contract.strike, years, vol, self.scenario.rate, contract.right)
        mark = self.mark_overrides.get(contract.con_id, round(greeks.price, 4))
        return Greeks(mark, greeks.delta, greeks.gamma, greeks.vega, greeks.theta, vol, spot)
