"""Scenario files (YAML) -> the model of ``scenario_model.py`` (accounts, underlyings, contracts, initial positions,
the clock and a timeline). ``scenario_synthetic.synthetic_scenario`` builds a large book for benchmarks.

The format is documented, field by field, in ``scenarios/reference.yaml``. ``load_scenario`` validates everything
up front and raises ``ScenarioError`` naming the offending entry, so a bad file never half-starts a simulator.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from v6_assets import sessions
from v6_assets.contracts.clock import utc_now
from v6_assets.gateway_sim.scenario_model import (
    EVENT_KINDS,
    LASTING_EVENTS,
    NEW_YORK,
    OPTION_SEC_TYPES,
    SEC_TYPES,
    Account,
    ClockSpec,
    ContractSpec,
    InitialPosition,
    Nastiness,
    Pacing,
    Scenario,
    ScenarioError,
    TimelineEvent,
    Underlying,
)

_EXPIRY_RE = re.compile(r"^(\d{8})(?: (\d{2}):(\d{2})(?::(\d{2}))? (\S+))?$")


def builtin_scenarios() -> list[str]:
    files = resources.files("v6_assets.gateway_sim").joinpath("scenarios")
    return sorted(p.name.removesuffix(".yaml") for p in files.iterdir() if p.name.endswith(".yaml"))


def load_scenario(
    name_or_path: str | Path, *, start_time: datetime | None = None, now: datetime | None = None
) -> Scenario:
    """Load a built-in scenario by name (``demo``) or a YAML file by path; ``start_time`` overrides the clock start."""
    text: str
    path = Path(name_or_path)
    if isinstance(name_or_path, str) and "/" not in name_or_path and not name_or_path.endswith((".yaml", ".yml")):
        resource = resources.files("v6_assets.gateway_sim").joinpath("scenarios", f"{name_or_path}.yaml")
        if not resource.is_file():
            raise ScenarioError(f"no built-in scenario {name_or_path!r} (built-ins: {', '.join(builtin_scenarios())})")
        text = resource.read_text()
    else:
        if not path.is_file():
            raise ScenarioError(f"scenario file {path} does not exist")
        text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"scenario {name_or_path}: invalid YAML: {exc}")
    return parse_scenario(data, start_time=start_time, now=now)


def _req(entry: dict[str, Any], key: str, where: str) -> Any:
    if key not in entry or entry[key] is None:
        raise ScenarioError(f"{where}: missing required field {key!r}")
    return entry[key]


def _num(value: Any, where: str, *, positive: bool = False, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError(f"{where}: expected a number, got {value!r}")
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise ScenarioError(f"{where}: {value!r} is not finite")
    if positive and (number < 0 or (number == 0 and not allow_zero)):
        raise ScenarioError(f"{where}: must be {'>' if not allow_zero else '>='} 0, got {value!r}")
    return number


def _zone(name: str, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScenarioError(f"{where}: unknown time zone {name!r}")


def parse_expiry(wire: str, where: str) -> datetime:
    """'20250117' -> 16:00 New York that day; '20230624 04:00:00 Asia/Shanghai' -> that instant."""
    match = _EXPIRY_RE.match(wire.strip())
    if not match:
        raise ScenarioError(f"{where}: bad expiry {wire!r}: expected YYYYMMDD or 'YYYYMMDD HH:MM:SS Zone'")
    try:
        day = datetime.strptime(match.group(1), "%Y%m%d").date()
    except ValueError:
        raise ScenarioError(f"{where}: bad expiry date {wire!r}")
    if match.group(2):
        zone = _zone(match.group(5), where)
        local = datetime.combine(day, time(int(match.group(2)), int(match.group(3)), int(match.group(4) or 0)), zone)
        return local.astimezone(UTC)
    return datetime.combine(day, time(16, 0), NEW_YORK).astimezone(UTC)


def _parse_start(value: Any, sessions_back: int, now: datetime | None) -> datetime:
    if value in (None, "auto"):
        # "N sessions ago at 09:00 ET": the demo seeds history, then continues live.
        today = (now or utc_now()).astimezone(NEW_YORK).date()
        first = sessions.last_sessions(sessions_back + 1, today)[0]
        return datetime.combine(first, time(9, 0), NEW_YORK).astimezone(UTC)
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            raise ScenarioError(f"clock.start: {value!r} is not 'auto' or an ISO datetime")
    if parsed.tzinfo is None:
        raise ScenarioError(f"clock.start: {value!r} has no time zone (write e.g. 2025-01-06T09:00:00-05:00)")
    return parsed.astimezone(UTC)


def _parse_at(entry: dict[str, Any], start: datetime, where: str) -> datetime:
    """An event time: ``at`` (ISO with zone), ``after`` (seconds after start) or ``session`` + ``time`` (ET)."""
    if "at" in entry:
        try:
            parsed = datetime.fromisoformat(str(entry["at"]))
        except ValueError:
            raise ScenarioError(f"{where}: at={entry['at']!r} is not an ISO datetime")
        if parsed.tzinfo is None:
            raise ScenarioError(f"{where}: at={entry['at']!r} has no time zone")
        return parsed.astimezone(UTC)
    if "after" in entry:
        return start + timedelta(seconds=_num(entry["after"], f"{where}.after", positive=True))
    if "session" in entry:
        index = entry["session"]
        if not isinstance(index, int) or index < 0:
            raise ScenarioError(f"{where}: session must be an integer >= 0, got {index!r}")
        start_day = start.astimezone(NEW_YORK).date()
        day = start_day if sessions.is_session(start_day) else sessions.next_session(start_day)
        for _ in range(index):
            day = sessions.next_session(day)
        clock_text = str(entry.get("time", "10:00"))
        try:
            local = time.fromisoformat(clock_text)
        except ValueError:
            raise ScenarioError(f"{where}: time={clock_text!r} is not HH:MM[:SS]")
        return datetime.combine(day, local, NEW_YORK).astimezone(UTC)
    raise ScenarioError(f"{where}: give one of 'at', 'after' or 'session' (+ 'time')")


def parse_scenario(data: Any, *, start_time: datetime | None = None, now: datetime | None = None) -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError("scenario: top level must be a mapping")
    clock_data = data.get("clock") or {}
    if not isinstance(clock_data, dict):
        raise ScenarioError("clock: must be a mapping")
    if start_time is not None:
        if start_time.tzinfo is None:
            raise ScenarioError("start_time must carry a time zone")
        start = start_time.astimezone(UTC)
    else:
        start = _parse_start(clock_data.get("start", "auto"), int(clock_data.get("sessions_back", 10)), now)
    clock_kwargs: dict[str, Any] = {"start": start}
    for key in ("speed", "portfolio_cadence_s", "pnl_cadence_s", "greeks_cadence_s", "account_values_cadence_s",
                "min_real_interval_s", "tick_real_s", "walk_step_s"):  # fmt: skip
        if key in clock_data:
            clock_kwargs[key] = _num(clock_data[key], f"clock.{key}", positive=True, allow_zero=False)
    if "settle_real_s" in clock_data:
        clock_kwargs["settle_real_s"] = _num(
            clock_data["settle_real_s"], "clock.settle_real_s", positive=True, allow_zero=True
        )
    if "skip_nights" in clock_data:
        clock_kwargs["skip_nights"] = clock_data["skip_nights"]
    unknown = set(clock_data) - {*clock_kwargs, "start", "sessions_back"}
    if unknown:
        raise ScenarioError(f"clock: unknown fields {sorted(unknown)}")
    clock = ClockSpec(**clock_kwargs)

    accounts: list[Account] = []
    for i, entry in enumerate(data.get("accounts") or []):
        where = f"accounts[{i}]"
        account_id = str(_req(entry, "id", where))
        if not account_id or "," in account_id:
            raise ScenarioError(f"{where}: bad account id {account_id!r}")
        rates = entry.get("fx_rates") or {}
        if not isinstance(rates, dict):
            raise ScenarioError(f"{where}: fx_rates must map currency -> rate")
        fx = {str(k): _num(v, f"{where}.fx_rates.{k}", positive=True, allow_zero=False) for k, v in rates.items()}
        accounts.append(Account(account_id, str(entry.get("base_currency", "USD")), fx))
    if not accounts:
        raise ScenarioError("accounts: at least one account is required (ib_async never becomes ready without one)")
    if len({a.account_id for a in accounts}) != len(accounts):
        raise ScenarioError("accounts: duplicate account ids")

    underlyings: dict[str, Underlying] = {}
    for i, entry in enumerate(data.get("underlyings") or []):
        where = f"underlyings[{i}]"
        symbol = str(_req(entry, "symbol", where))
        underlyings[symbol] = Underlying(
            symbol,
            _num(_req(entry, "spot", where), f"{where}.spot", positive=True, allow_zero=False),
            _num(_req(entry, "vol", where), f"{where}.vol", positive=True, allow_zero=False),
            _num(entry.get("drift", 0.0), f"{where}.drift"),
        )

    contracts: dict[int, ContractSpec] = {}
    for i, entry in enumerate(data.get("contracts") or []):
        contract = _parse_contract(entry, f"contracts[{i}]", underlyings, start)
        if contract.con_id in contracts:
            raise ScenarioError(f"contracts[{i}]: duplicate con_id {contract.con_id}")
        contracts[contract.con_id] = contract

    account_ids = {a.account_id for a in accounts}
    positions: list[InitialPosition] = []
    for i, entry in enumerate(data.get("positions") or []):
        where = f"positions[{i}]"
        account = str(_req(entry, "account", where))
        con_id = _req(entry, "con_id", where)
        if account not in account_ids:
            raise ScenarioError(f"{where}: unknown account {account!r}")
        if con_id not in contracts:
            raise ScenarioError(f"{where}: unknown con_id {con_id!r}")
        qty = _num(_req(entry, "qty", where), f"{where}.qty")
        if qty == 0:
            raise ScenarioError(f"{where}: qty must not be 0")
        raw_avg = _req(entry, "avg_cost", where)
        # "mark": opened at the model mark of the start (per contract, multiplier included)
        avg = None if raw_avg == "mark" else _num(raw_avg, f"{where}.avg_cost", positive=True)
        positions.append(InitialPosition(account, int(con_id), qty, avg))
    if len({(p.account, p.con_id) for p in positions}) != len(positions):
        raise ScenarioError("positions: duplicate (account, con_id)")

    events: list[TimelineEvent] = []
    wheres: dict[int, str] = {}  # id(event) -> "events[i]", for errors found once the timeline is in time order
    for i, entry in enumerate(data.get("events") or []):
        where = f"events[{i}]"
        event = _parse_event(entry, where, start, account_ids, contracts, underlyings)
        wheres[id(event)] = where
        if event.at < start:
            if start_time is None:
                raise ScenarioError(f"{where}: {event.at.isoformat()} is before the clock start {start.isoformat()}")
            continue  # the caller moved the start past it (e.g. --start now): history that did not happen
        events.append(event)
        if event.kind in LASTING_EVENTS:
            events.append(TimelineEvent(event.at + timedelta(seconds=event.params["seconds"]), f"{event.kind}_end",
                                        event.params))  # fmt: skip
    events.sort(key=lambda e: e.at)  # stable: same-time events keep file order
    _check_settlements(events, wheres, positions, contracts)

    nasty_data = data.get("nastiness") or {}
    unknown = set(nasty_data) - set(Nastiness.__dataclass_fields__)
    if unknown:
        raise ScenarioError(f"nastiness: unknown fields {sorted(unknown)}")
    nastiness = Nastiness(**nasty_data)
    pacing_data = data.get("pacing") or {}
    unknown = set(pacing_data) - set(Pacing.__dataclass_fields__)
    if unknown:
        raise ScenarioError(f"pacing: unknown fields {sorted(unknown)}")
    pacing = Pacing(**{k: int(_num(v, f"pacing.{k}", positive=True)) for k, v in pacing_data.items()})
    lines = data.get("market_data_lines", 100)
    if not isinstance(lines, int) or lines < 0:
        raise ScenarioError(f"market_data_lines: expected an integer >= 0, got {lines!r}")
    return Scenario(
        name=str(data.get("name", "unnamed")),
        accounts=tuple(accounts),
        underlyings=underlyings,
        contracts=contracts,
        positions=tuple(positions),
        clock=clock,
        events=tuple(events),
        nastiness=nastiness,
        rate=_num(data.get("rate", 0.0), "rate"),
        seed=int(data.get("seed", 0)),
        market_data_lines=lines,
        max_clients=int(data.get("max_clients", 32)),
        next_valid_id=int(data.get("next_valid_id", 1)),
        pacing=pacing,
    )


def _relative_expiry(spec: dict[str, Any], start: datetime, where: str) -> str:
    """``{session: N}`` or ``{days: N}`` (rolled to a session) from the start, optionally ``zone`` for the wire form."""
    start_day = start.astimezone(NEW_YORK).date()
    if "session" in spec:
        index = spec["session"]
        if not isinstance(index, int) or index < 0:
            raise ScenarioError(f"{where}: expiry.session must be an integer >= 0")
        day = start_day if sessions.is_session(start_day) else sessions.next_session(start_day)
        for _ in range(index):
            day = sessions.next_session(day)
    elif "days" in spec:
        days = spec["days"]
        if not isinstance(days, int) or days < 0:
            raise ScenarioError(f"{where}: expiry.days must be an integer >= 0")
        day = start_day + timedelta(days=days)
        if not sessions.is_session(day):
            day = sessions.next_session(day)
    else:
        raise ScenarioError(f"{where}: expiry mapping needs 'session' or 'days'")
    if "zone" in spec:
        # IB sometimes sends the expiry instant in the exchange's zone, e.g. '20230624 04:00:00 Asia/Shanghai'.
        zone = _zone(str(spec["zone"]), where)
        instant = datetime.combine(day, time(16, 0), NEW_YORK).astimezone(zone)
        return instant.strftime("%Y%m%d %H:%M:%S ") + str(spec["zone"])
    return day.strftime("%Y%m%d")


def _parse_contract(
    entry: dict[str, Any], where: str, underlyings: dict[str, Underlying], start: datetime
) -> ContractSpec:
    con_id = _req(entry, "con_id", where)
    if not isinstance(con_id, int) or con_id <= 0:
        raise ScenarioError(f"{where}: con_id must be a positive integer, got {con_id!r}")
    symbol = str(_req(entry, "symbol", where))
    if symbol not in underlyings:
        raise ScenarioError(f"{where}: symbol {symbol!r} has no underlying entry")
    sec_type = str(_req(entry, "sec_type", where))
    if sec_type not in SEC_TYPES:
        raise ScenarioError(f"{where}: sec_type {sec_type!r} not one of {SEC_TYPES}")
    option = sec_type in OPTION_SEC_TYPES
    raw_expiry = entry.get("expiry")
    if isinstance(raw_expiry, dict):
        expiry_wire = _relative_expiry(raw_expiry, start, where)
    else:
        expiry_wire = "" if raw_expiry is None else str(raw_expiry)
    expiry_at = parse_expiry(expiry_wire, where) if option or expiry_wire else None
    strike = _num(entry.get("strike", 0.0), f"{where}.strike", positive=True, allow_zero=not option)
    right = str(entry.get("right", ""))
    if option and right not in ("C", "P"):
        raise ScenarioError(f"{where}: right must be C or P for options, got {right!r}")
    default_multiplier = 100.0 if option else 1.0
    multiplier_value = entry.get("multiplier", default_multiplier)
    if isinstance(multiplier_value, str):
        try:
            multiplier = float(multiplier_value) if multiplier_value else 1.0
        except ValueError:
            raise ScenarioError(f"{where}: multiplier {multiplier_value!r} is not a number")
        multiplier_wire = multiplier_value
    else:
        multiplier = _num(multiplier_value, f"{where}.multiplier", positive=True, allow_zero=False)
        multiplier_wire = f"{multiplier:g}" if option or sec_type == "FUT" else ""
    if "multiplier_wire" in entry:
        multiplier_wire = str(entry["multiplier_wire"])
    trading_class = str(entry.get("trading_class", symbol))
    expiry_day = expiry_wire[:8]
    local_symbol = str(entry.get("local_symbol", "")) or (
        f"{symbol:<6}{expiry_day[2:]}{right}{round(strike * 1000):08d}" if option else symbol
    )
    vol = entry.get("vol")
    return ContractSpec(
        con_id=con_id,
        symbol=symbol,
        sec_type=sec_type,
        expiry_wire=expiry_wire,
        expiry_at=expiry_at,
        strike=strike,
        right=right,
        multiplier=multiplier,
        multiplier_wire=multiplier_wire,
        currency=str(entry.get("currency", "USD")),
        trading_class=trading_class,
        exchange=str(entry.get("exchange", "SMART")),
        primary_exchange=str(entry.get("primary_exchange", "")),
        local_symbol=local_symbol,
        vol=None if vol is None else _num(vol, f"{where}.vol", positive=True, allow_zero=False),
    )


def _parse_event(
    entry: dict[str, Any],
    where: str,
    start: datetime,
    account_ids: set[str],
    contracts: dict[int, ContractSpec],
    underlyings: dict[str, Underlying],
) -> TimelineEvent:
    if not isinstance(entry, dict):
        raise ScenarioError(f"{where}: must be a mapping")
    kind = str(_req(entry, "kind", where))
    if kind not in EVENT_KINDS:
        raise ScenarioError(f"{where}: kind {kind!r} not one of {EVENT_KINDS}")
    at = _parse_at(entry, start, where)
    params = {k: v for k, v in entry.items() if k not in ("kind", "at", "after", "session", "time")}
    if kind == "trade":
        account = str(_req(params, "account", where))
        if account not in account_ids:
            raise ScenarioError(f"{where}: unknown account {account!r}")
        con_id = _req(params, "con_id", where)
        if con_id not in contracts:
            raise ScenarioError(f"{where}: unknown con_id {con_id!r}")
        qty = _num(_req(params, "qty", where), f"{where}.qty")
        if qty == 0:
            raise ScenarioError(f"{where}: qty must not be 0")
        params = {
            "account": account,
            "con_id": int(con_id),
            "qty": qty,
            # "mark": trade at the model mark of that moment (realistic fills without hand-picked prices)
            "price": None
            if params.get("price") == "mark"
            else _num(_req(params, "price", where), f"{where}.price", positive=True),
            "commission": _num(params.get("commission", 0.0), f"{where}.commission", positive=True),
            # the commission report follows the execution this many simulated seconds later
            "commission_delay_s": _num(
                params.get("commission_delay_s", 0.0), f"{where}.commission_delay_s", positive=True
            ),
        }
        _check_not_after_close(at, where)
    elif kind == "correct_execution":
        account = str(_req(params, "account", where))
        con_id = _req(params, "con_id", where)
        if account not in account_ids or con_id not in contracts:
            raise ScenarioError(f"{where}: unknown account {account!r} or con_id {con_id!r}")
        corrected = _num(_req(params, "price", where), f"{where}.price", positive=True)
        params = {"account": account, "con_id": int(con_id), "price": corrected}
    elif kind == "underlying":
        symbol = str(_req(params, "symbol", where))
        if symbol not in underlyings:
            raise ScenarioError(f"{where}: unknown underlying {symbol!r}")
        params = {"symbol": symbol, "price": _num(_req(params, "price", where), f"{where}.price", allow_zero=False,
                                                  positive=True)}  # fmt: skip
    elif kind == "mark":
        con_id = _req(params, "con_id", where)
        if con_id not in contracts:
            raise ScenarioError(f"{where}: unknown con_id {con_id!r}")
        price = params.get("price")
        params = {
            "con_id": int(con_id),
            "price": None if price is None else _num(price, f"{where}.price", positive=True),
        }
    elif kind in ("reset", "competing_session", "farm_down"):
        data_lost = params.get("data_lost", False)
        if not isinstance(data_lost, bool):
            raise ScenarioError(f"{where}: data_lost must be true or false")
        params = {"seconds": _num(_req(params, "seconds", where), f"{where}.seconds", positive=True)}
        if kind == "reset":
            params["data_lost"] = data_lost
    elif kind in ("refuse", "stall", "restart"):
        params = {"seconds": _num(_req(params, "seconds", where), f"{where}.seconds", positive=True)}
    elif kind == "error":
        code = _req(params, "code", where)
        if not isinstance(code, int):
            raise ScenarioError(f"{where}: code must be an integer")
        params = {"code": code, "message": str(params.get("message", f"simulated error {code}")),
                  "req_id": int(params.get("req_id", -1))}  # fmt: skip
    elif kind in ("exercise", "assign"):
        account = str(_req(params, "account", where))
        con_id = _req(params, "con_id", where)
        if account not in account_ids:
            raise ScenarioError(f"{where}: unknown account {account!r}")
        if con_id not in contracts or not contracts[con_id].is_option:
            raise ScenarioError(f"{where}: con_id {con_id!r} is not an option of the scenario")
        raw = params.get("contracts")
        n = None if raw is None else _num(raw, f"{where}.contracts", positive=True, allow_zero=False)
        params = {"account": account, "con_id": int(con_id), "contracts": n}
        day = at.astimezone(NEW_YORK).date()
        cut = sessions.eod_cut(day) if sessions.is_session(day) else None
        if cut is not None and cut - sessions.EOD_CUT_AFTER_CLOSE <= at < cut:
            # the EOD truth is the close refresh: nothing may change the book between the close and the cut
            raise ScenarioError(f"{where}: {kind} at {at.isoformat()} falls between the close and the EOD cut")
    elif kind == "expire":
        con_ids = params.get("con_ids")
        if con_ids is not None and any(c not in contracts for c in con_ids):
            raise ScenarioError(f"{where}: unknown con_id in {con_ids!r}")
        params = {"con_ids": None if con_ids is None else [int(c) for c in con_ids]}
    return TimelineEvent(at, kind, params)


def _check_settlements(
    events: list[TimelineEvent], wheres: dict[int, str], positions: list[InitialPosition],
    contracts: dict[int, ContractSpec],
) -> None:  # fmt: skip
    """Every ``exercise`` needs a long and every ``assign`` a short position of at least that size at its time, in
    an option not yet expired (quantities followed through the initial book, the trades and earlier settlements)."""
    held = {(p.account, p.con_id): p.qty for p in positions}
    for event in events:
        p = event.params
        if event.kind not in ("trade", "exercise", "assign"):
            continue
        key: tuple[str, int] = (p["account"], p["con_id"])
        if event.kind == "trade":
            held[key] = held.get(key, 0.0) + p["qty"]
        else:
            where = wheres[id(event)]
            qty = held.get(key, 0.0)
            long = event.kind == "exercise"
            expiry = contracts[p["con_id"]].expiry_at
            if expiry is not None and event.at > expiry:
                raise ScenarioError(f"{where}: {event.kind} of {p['con_id']} after its expiry ({expiry.isoformat()})")
            if qty == 0 or (qty > 0) != long:
                state = "flat" if qty == 0 else ("short" if long else "long")
                raise ScenarioError(f"{where}: {event.kind} of {p['account']} {p['con_id']}: the position is {state} "
                                    f"then (an {'exercise needs a long' if long else 'assignment needs a short'} "
                                    "position)")  # fmt: skip
            n = abs(qty) if p["contracts"] is None else p["contracts"]
            if n > abs(qty):
                raise ScenarioError(f"{where}: {event.kind} of {n} contracts; {p['account']} holds {abs(qty):g}")
            held[key] = qty - n if qty > 0 else qty + n


def _check_not_after_close(at: datetime, where: str) -> None:
    """Trades only in regular hours: the EOD state is then exactly the close refresh (no trades close..cut)."""
    day = at.astimezone(NEW_YORK).date()
    if not sessions.is_session(day):
        raise ScenarioError(f"{where}: trade at {at.isoformat()} is not on an NYSE session day")
    close = sessions.eod_cut(day) - sessions.EOD_CUT_AFTER_CLOSE
    open_ = datetime.combine(day, time(9, 30), NEW_YORK).astimezone(UTC)
    if not open_ <= at < close:
        raise ScenarioError(f"{where}: trade at {at.isoformat()} is outside regular hours (09:30 ET - close)")
