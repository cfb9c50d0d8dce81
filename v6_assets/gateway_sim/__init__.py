"""IB Gateway simulator: the real TWS socket protocol, a deterministic market and book, and ground truth.

Usage::

    from v6_assets.gateway_sim import GatewaySimulator, load_scenario
    with GatewaySimulator("demo", speed=600, truth_dir=Path("truth")).running() as sim:
        ib = IB(); ib.connect("127.0.0.1", sim.port, clientId=1, readonly=True)

    v6-gateway-sim --scenario demo --port 0 --speed 600 --record requests.jsonl --truth-out truth/

Protocol: versions 100..178 negotiated as ``min(client_max, 178)`` (closed if below the client's minimum); the
messages that changed inside that range are gated (ERR_MSG's advancedOrderRejectJson from 166, tick 21's layout
from 156, PnL requests from 127). Limits: unique client ids (error 326 + close), at most ``max_clients`` (32)
clients (error 502 + close), ``market_data_lines`` (100) lines across the server (error 101). Order requests
(placeOrder, cancelOrder, reqGlobalCancel, exerciseOptions) get error 321 (read-only mode) and are recorded with
``"violation": true``. Benchmarks: ``synthetic_scenario(positions=2000)`` + ``sim.blast(messages)`` (or
``await sim.blast_async(messages)``) push portfolio / PnL-single updates as fast as the sockets accept.

Scenario format: ``scenarios/reference.yaml`` documents every field with comments.

Ground truth (``--truth-out DIR`` / ``sim.write_truth(DIR)``):

- ``sent.jsonl``: one line per value message sent: ``sim_time`` (ISO UTC), ``wall_time`` (epoch s), ``client_id``,
  ``kind`` (portfolio | position | pnl_single | pnl | greeks), ``account`` ('' for greeks), ``con_id``, and the
  numeric fields exactly as sent (sentinels as sent: realized_pnl 1.7976931348623157e308, greeks -1/-2).
  portfolio: position, market_price, market_value, average_cost, unrealized_pnl, realized_pnl;
  position: position, average_cost; pnl_single: req_id, position, daily_pnl, unrealized_pnl, realized_pnl, value;
  pnl: req_id, daily_pnl, unrealized_pnl, realized_pnl; greeks: req_id, tick_type, implied_vol, delta, opt_price,
  pv_dividend, gamma, vega, theta, und_price. Blast-mode benchmark traffic is not recorded.
- ``eod.jsonl``: one line per account x option con_id x session closed (stock positions excluded: clients ignore
  them -- except a stock position an exercise or assignment created or changed, recorded from then on): session,
  account, con_id, symbol, sec_type, expiry (ISO date, New York), expiry_wire, strike, right, multiplier, currency,
  position, prev_position, prev_mark, mark (the close mark), market_value, average_cost, unrealized_pnl,
  realized_pnl (this session, 0 when none), realized_pnl_sent (as the portfolio row sends it), commissions,
  daily_pnl, baseline, closed, und_price, delta, gamma, vega, theta, implied_vol. ``daily_pnl`` is the statement
  formula: prev_position * (mark - prev_mark) * m + sum(fill_qty * (mark - fill_price) * m) - commissions. It is
  ``null`` with ``baseline: true`` in the first session of a position that pre-existed the scenario start (its
  previous EOD mark is unknown to any client). Closed positions appear once, with position 0, in the session they
  closed (expiries included). At each close the simulator pushes a final portfolio + PnL-single (+ PnL) refresh of
  every open position at the close mark; the EOD truth equals those values, and no trade may be scheduled between
  the close and the cut, so (U_D - U_{D-1}) + R_D over sent values == daily_pnl.
- ``lifecycle.jsonl``: one line per expiry / exercise / assignment booked: sim_time, account, con_id, code (Ep,
  Ex, A), event (expired, exercised, assigned), quantity (the option's signed change), intrinsic, stock_con_id,
  stock_quantity and stock_price (the strike; null when nothing was delivered). Fills booked so carry the code
  in ``eod.jsonl`` (``fills[].code``); no execution is recorded for them (IB reports none).
- ``summary.json``: scenario, seed, start, speed, sessions closed, order violations, request count.
- ``sim.truth["accounts"]`` (in memory): per session close and account, the account values as sent at the close
  (after the expiries): NetLiquidation = cash + market value of every position (stock included), in the base
  currency at the scenario's ``fx_rates``; cash per currency = 1,000,000 of the base currency at the start, then every
  fill's -(qty x price x multiplier + commission) (an expiry at intrinsic is a fill). reqAccountUpdatesMulti
  subscriptions get these values at subscription and at each close.

Semantics chosen (document for consumers):

- Time: ``speed`` simulated seconds per real second from the scenario start; the clock never runs ahead of the real
  wall clock (once caught up it continues at speed 1). Cadences (portfolio 180 s, PnL 1 s, greeks 1 s) are in
  simulated time but each stream repeats at most every ``min_real_interval_s`` (0.25 s) of real time. At speed > 60,
  nights and weekends are skipped (jump to 30 min before the next open once the EOD cut is processed).
- Marks: underlyings random-walk on a grid of trading seconds (regular hours only); options are Black-Scholes
  (rate from the scenario, no dividends), marks rounded to 4 decimals; outside regular hours every mark is the last
  close's (stale) and bid/ask are -1.
- updatePortfolio realizedPNL is per session (reset at the EOD cut, not IB's 20:30 ET, so it lines up with the
  project's sessions), UNSET_DOUBLE when not traded this session. reqPnLSingle realizedPnL is cumulative since
  inception (as IB documents); its dailyPnL is IB's formula since the last reset (the EOD cut), and for positions
  that pre-existed the start it uses the mark at the start as the reset reference.
- A position closed today is sent once with position 0 when it closes; it is also in a new account download and
  in reqPositions until the EOD cut, then dropped. Stock positions are sent (clients must ignore them).
- Not modelled: executions and orders (their end markers only), contract details (error 200 at once), pacing
  error 100. Unknown requests are recorded and ignored.
- Expiries: at the close of the expiry session (or at an ``expire`` event) an option position is closed at its
  intrinsic value (0 when worthless) with no commission; the position-0 row is sent once.
"""

from v6_assets.gateway_sim.clock import SimClock
from v6_assets.gateway_sim.scenario import builtin_scenarios, load_scenario, parse_scenario
from v6_assets.gateway_sim.scenario_model import Scenario, ScenarioError
from v6_assets.gateway_sim.scenario_synthetic import synthetic_scenario
from v6_assets.gateway_sim.server import GatewaySimulator

__all__ = [
    "GatewaySimulator",
    "Scenario",
    "ScenarioError",
    "SimClock",
    "builtin_scenarios",
    "load_scenario",
    "parse_scenario",
    "synthetic_scenario",
]
