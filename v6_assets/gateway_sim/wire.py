"""The one wire encoder: every message the simulator sends is laid out here, per negotiated server version.

``LAYOUTS`` is the version table: each outgoing message id maps to its layouts in ascending ``since`` (the first
server version using that layout), each with the message's own version field and its fields in wire order, every
field with its type. A client's encoder picks, per message, the last layout its negotiated version reaches; a
message with no layout at a version does not exist there. ``version_rules()`` lists the table as rows (message,
field, from which version, type). Every rule follows IB's own decoder (``ibapi``'s ``decoder.py``) and its
``server_versions`` constants; field rules that change between server versions belong here, not at the call sites.

Types: ``int`` fields are written as integers (IB's clients parse them with ``int()``: ``10.0`` there is a decode
error), ``decimal`` fields as the shortest decimal (``10``, ``2.5``), ``float`` fields with ``repr`` and ``text``
fields as they are.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from v6_assets.gateway_sim import protocol
from v6_assets.gateway_sim.protocol import Out
from v6_assets.gateway_sim.scenario_model import ContractSpec

_pack_length = protocol.LENGTH.pack


class Kind(enum.StrEnum):
    """A field's wire type."""

    INT = "int"
    FLOAT = "float"
    DECIMAL = "decimal"
    TEXT = "text"


_KIND_CODES = {"i": Kind.INT, "f": Kind.FLOAT, "d": Kind.DECIMAL, "t": Kind.TEXT}


@dataclass(frozen=True, slots=True)
class Layout:
    """One message's wire layout from server version ``since`` on."""

    since: int
    version: int | None  # the message's own version field; None when the message has none
    fields: tuple[str, ...]
    kinds: tuple[Kind, ...]
    defaults: Mapping[str, object] = field(default_factory=dict)  # values callers may leave out

    def kind(self, name: str) -> Kind:
        return self.kinds[self.fields.index(name)]


def layout(since: int, version: int | None, spec: str, defaults: Mapping[str, object] | None = None) -> Layout:
    """A layout from ``"name:kind ..."`` (kinds: ``i`` int, ``f`` float, ``d`` decimal, ``t`` text)."""
    pairs = [item.split(":") for item in spec.split()]
    return Layout(since, version, tuple(n for n, _ in pairs), tuple(_KIND_CODES[k] for _, k in pairs),
                  dict(defaults or {}))  # fmt: skip


V = protocol  # the version gates, named as in ibapi's server_versions
MIN = protocol.SERVER_MIN_VERSION
# The contract part of portfolio and position rows (``exchange`` is the primary exchange in portfolio rows).
CONTRACT = ("con_id:i symbol:t sec_type:t expiry:t strike:f right:t multiplier:t exchange:t currency:t local_symbol:t "
            "trading_class:t")  # fmt: skip
CONTRACT_FIELDS = tuple(item.split(":")[0] for item in CONTRACT.split())
_GREEKS = "implied_vol:f delta:f opt_price:f pv_dividend:f gamma:f vega:f theta:f und_price:f"
# execDetails after the contract (ibapi decoder: version 10 fields until MIN_VERSION_LAST_LIQUIDITY, then by version)
_EXECUTION = ("exec_id:t time:t account:t exec_exchange:t side:t shares:{q} price:f perm_id:i client_id:i "
              "liquidation:i cum_qty:{q} avg_price:f order_ref:t ev_rule:t ev_multiplier:f")  # fmt: skip
_EXEC_INT, _EXEC_DECIMAL = _EXECUTION.format(q="i"), _EXECUTION.format(q="d")
_PORTFOLIO = "market_price:f market_value:f average_cost:f unrealized_pnl:f realized_pnl:f account:t"

LAYOUTS: dict[int, tuple[Layout, ...]] = {
    Out.TICK_PRICE: (
        layout(MIN, 6, "req_id:i tick_type:i price:f size:i attrib_mask:i"),
        layout(V.MIN_VERSION_FRACTIONAL_SIZE_SUPPORT, 6, "req_id:i tick_type:i price:f size:d attrib_mask:i"),
    ),
    Out.ERR_MSG: (
        layout(MIN, 2, "req_id:i code:i message:t"),
        layout(
            V.MIN_VERSION_ADVANCED_ORDER_REJECT,
            2,
            "req_id:i code:i message:t advanced_order_reject_json:t",
            {"advanced_order_reject_json": ""},
        ),
    ),
    Out.ACCT_VALUE: (layout(MIN, 2, "key:t value:t currency:t account:t"),),
    Out.PORTFOLIO_VALUE: (
        layout(MIN, 8, f"{CONTRACT} position:i {_PORTFOLIO}"),
        layout(V.MIN_VERSION_FRACTIONAL_POSITIONS, 8, f"{CONTRACT} position:d {_PORTFOLIO}"),
    ),
    Out.ACCT_UPDATE_TIME: (layout(MIN, 1, "time:t"),),
    Out.NEXT_VALID_ID: (layout(MIN, 1, "order_id:i"),),
    Out.MANAGED_ACCTS: (layout(MIN, 1, "accounts:t"),),
    Out.TICK_OPTION_COMPUTATION: (
        layout(MIN, 6, f"req_id:i tick_type:i {_GREEKS}"),
        # the version field goes, tickAttrib comes after the tick type
        layout(
            V.MIN_VERSION_PRICE_BASED_VOLATILITY,
            None,
            f"req_id:i tick_type:i tick_attrib:i {_GREEKS}",
            {"tick_attrib": 0},
        ),
    ),
    Out.CURRENT_TIME: (layout(MIN, 1, "time:i"),),
    Out.EXECUTION_DATA: (
        layout(MIN, 10, f"req_id:i order_id:i {CONTRACT} {_EXEC_INT}"),
        layout(V.MIN_VERSION_FRACTIONAL_POSITIONS, 10, f"req_id:i order_id:i {CONTRACT} {_EXEC_DECIMAL}"),
        layout(V.MIN_VERSION_MODELS_SUPPORT, 10, f"req_id:i order_id:i {CONTRACT} {_EXEC_DECIMAL} model_code:t"),
        # the version field goes, lastLiquidity comes at the end
        layout(
            V.MIN_VERSION_LAST_LIQUIDITY,
            None,
            f"req_id:i order_id:i {CONTRACT} {_EXEC_DECIMAL} model_code:t last_liquidity:i",
        ),
        layout(
            V.MIN_VERSION_PENDING_PRICE_REVISION,
            None,
            f"req_id:i order_id:i {CONTRACT} {_EXEC_DECIMAL} model_code:t last_liquidity:i pending_price_revision:i",
        ),
    ),
    Out.COMMISSION_REPORT: (
        layout(MIN, 1, "exec_id:t commission:f currency:t realized_pnl:f yield_:f yield_redemption_date:i"),
    ),
    Out.OPEN_ORDER_END: (layout(MIN, 1, ""),),
    Out.ACCT_DOWNLOAD_END: (layout(MIN, 1, "account:t"),),
    Out.EXECUTION_DATA_END: (layout(MIN, 1, "req_id:i"),),
    Out.TICK_SNAPSHOT_END: (layout(MIN, 1, "req_id:i"),),
    Out.POSITION_DATA: (
        layout(MIN, 3, f"account:t {CONTRACT} position:i average_cost:f"),
        layout(V.MIN_VERSION_FRACTIONAL_POSITIONS, 3, f"account:t {CONTRACT} position:d average_cost:f"),
    ),
    Out.POSITION_END: (layout(MIN, 1, ""),),
    Out.ACCOUNT_SUMMARY_END: (layout(MIN, 1, "req_id:i"),),
    Out.ACCOUNT_UPDATE_MULTI: (
        layout(V.MIN_VERSION_MODELS_SUPPORT, 1, "req_id:i account:t model_code:t key:t value:t currency:t"),
    ),
    Out.ACCOUNT_UPDATE_MULTI_END: (layout(V.MIN_VERSION_MODELS_SUPPORT, 1, "req_id:i"),),
    Out.PNL: (
        layout(V.MIN_VERSION_PNL, None, "req_id:i daily_pnl:f"),
        layout(V.MIN_VERSION_UNREALIZED_PNL, None, "req_id:i daily_pnl:f unrealized_pnl:f"),
        layout(V.MIN_VERSION_REALIZED_PNL, None, "req_id:i daily_pnl:f unrealized_pnl:f realized_pnl:f"),
    ),
    Out.PNL_SINGLE: (
        layout(V.MIN_VERSION_PNL, None, "req_id:i position:i daily_pnl:f value:f"),
        layout(V.MIN_VERSION_UNREALIZED_PNL, None, "req_id:i position:i daily_pnl:f unrealized_pnl:f value:f"),
        layout(
            V.MIN_VERSION_REALIZED_PNL, None, "req_id:i position:i daily_pnl:f unrealized_pnl:f realized_pnl:f value:f"
        ),
        layout(
            V.MIN_VERSION_FRACTIONAL_SIZE_SUPPORT,
            None,
            "req_id:i position:d daily_pnl:f unrealized_pnl:f realized_pnl:f value:f",
        ),
    ),
    Out.COMPLETED_ORDERS_END: (layout(V.MIN_VERSION_COMPLETED_ORDERS, None, ""),),
}


@dataclass(frozen=True, slots=True)
class VersionRule:
    """One row of the version table: from server version ``since`` on, ``msg_id`` carries ``field`` as ``kind``."""

    msg_id: int
    field: str
    since: int
    kind: Kind


def version_rules() -> Iterator[VersionRule]:
    """The version table as rows: each message's fields and the version their presence or type starts from."""
    for msg_id, layouts in LAYOUTS.items():
        seen: dict[str, Kind] = {}
        for lay in layouts:
            for name, kind in zip(lay.fields, lay.kinds, strict=True):
                if seen.get(name) is not kind:
                    seen[name] = kind
                    yield VersionRule(msg_id, name, lay.since, kind)


def _int_text(value: object) -> str:
    if type(value) is int:
        return str(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    raise ValueError(f"{value!r} is not an integer (the field is an integer at this server version)")


def _decimal_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return protocol.fmt(value)


_TEXT_OF = {Kind.INT: _int_text, Kind.DECIMAL: _decimal_text, Kind.FLOAT: protocol.fmt, Kind.TEXT: protocol.fmt}


def contract_fields(contract: ContractSpec, exchange: str) -> dict[str, object]:
    """The ``CONTRACT_FIELDS`` values of ``contract`` (``exchange``: which of its exchanges the message carries)."""
    c = contract
    return {"con_id": c.con_id, "symbol": c.symbol, "sec_type": c.sec_type, "expiry": c.expiry_wire,
            "strike": c.strike, "right": c.right, "multiplier": c.multiplier_wire, "exchange": exchange,
            "currency": c.currency, "local_symbol": c.local_symbol, "trading_class": c.trading_class}  # fmt: skip


def protocol_zone() -> tzinfo:
    """The zone of the times the gateway writes (its host's zone: New York)."""
    from v6_assets.sessions import NEW_YORK

    return NEW_YORK


def server_hello(version: int, now: datetime) -> bytes:
    """The handshake answer (no message id): the negotiated version and the server time with its zone name."""
    local = now.astimezone(protocol_zone())
    return protocol.encode([version, local.strftime("%Y%m%d %H:%M:%S ") + (local.tzname() or "UTC")])


def execution_time(at: datetime) -> str:
    """execDetails' time: ``YYYYMMDD HH:MM:SS <zone>`` in the protocol zone (the zone named, as IB does since v10)."""
    local = at.astimezone(protocol_zone())
    return local.strftime("%Y%m%d %H:%M:%S ") + str(getattr(protocol_zone(), "key", "UTC"))


def account_time(now: datetime) -> str:
    """ACCT_UPDATE_TIME's ``HH:MM`` in the protocol zone."""
    return now.astimezone(protocol_zone()).strftime("%H:%M")


def raw_frame(payload: bytes) -> bytes:
    """Frame an arbitrary payload as is -- only for faults that send what no layout allows."""
    return protocol.encode_raw(payload)


class FrameTemplate:
    """A message whose leading fields are encoded once; ``encode`` adds the rest (the blast's hot path).

    ``encode`` takes the remaining fields of the message's newest layout, in that order; fields the negotiated
    version does not have are left out. Floats are written by one ``str.format`` with ``repr`` -- what
    ``protocol.fmt`` writes for finite floats, the only floats a template may be given -- integer and decimal
    fields by their converters.
    """

    __slots__ = ("_converters", "_format", "_prefix", "_selected", "remaining")

    def __init__(self, prefix: str, remaining: tuple[str, ...], present: Layout) -> None:
        if not remaining:
            raise ValueError("a template needs at least one remaining field")
        self._prefix = prefix
        self.remaining = remaining
        self._selected = tuple(i for i, name in enumerate(remaining) if name in present.fields)
        kinds = [present.kind(remaining[i]) for i in self._selected]
        self._converters = tuple(
            (pos, _TEXT_OF[kind]) for pos, kind in enumerate(kinds) if kind in (Kind.INT, Kind.DECIMAL)
        )
        self._format = "".join("{!r}\0" if kind is Kind.FLOAT else "{}\0" for kind in kinds)

    def encode(self, *values: object) -> bytes:
        """The frame with ``values`` as the remaining fields, in the newest layout's order."""
        if len(values) != len(self.remaining):
            raise ValueError(f"expected values for {self.remaining}, got {len(values)}")
        chosen = [values[i] for i in self._selected]
        for pos, convert in self._converters:
            chosen[pos] = convert(chosen[pos])
        payload = (self._prefix + self._format.format(*chosen)).encode()
        return _pack_length(len(payload)) + payload


class WireEncoder:
    """Encodes outgoing messages for one negotiated server version."""

    def __init__(self, server_version: int) -> None:
        self.server_version = server_version
        self._layouts = {msg_id: self._pick(options) for msg_id, options in LAYOUTS.items()}
        # every field a message has at any version: values for fields absent at this version are dropped
        self._known = {
            msg_id: frozenset(f for lay in options for f in lay.fields) for msg_id, options in LAYOUTS.items()
        }

    def _pick(self, options: tuple[Layout, ...]) -> Layout | None:
        usable = [lay for lay in options if lay.since <= self.server_version]
        return usable[-1] if usable else None

    def has(self, msg_id: int) -> bool:
        """Whether the message exists at this server version."""
        return self._layouts.get(msg_id) is not None

    def layout(self, msg_id: int) -> Layout:
        if msg_id not in self._layouts:
            raise ValueError(f"no wire layout for outgoing message {msg_id}")
        found = self._layouts[msg_id]
        if found is None:
            raise ValueError(f"message {msg_id} does not exist at server version {self.server_version}")
        return found

    def _head(self, msg_id: int) -> tuple[Layout, list[str]]:
        lay = self.layout(msg_id)
        return lay, [str(msg_id)] if lay.version is None else [str(msg_id), str(lay.version)]

    def texts(self, msg_id: int, values: Mapping[str, object]) -> list[str]:
        """The message's fields as wire text (id and version field included) from named ``values``."""
        lay, head = self._head(msg_id)
        unknown = values.keys() - self._known[msg_id]
        if unknown:
            raise ValueError(f"message {msg_id} has no fields {sorted(unknown)}")
        out = head
        for name, kind in zip(lay.fields, lay.kinds, strict=True):
            if name in values:
                value = values[name]
            elif name in lay.defaults:
                value = lay.defaults[name]
            else:
                raise ValueError(f"message {msg_id} needs field {name!r} at v{self.server_version}")
            try:
                out.append(_TEXT_OF[kind](value))
            except ValueError as exc:
                raise ValueError(f"message {msg_id} field {name!r} at v{self.server_version}: {exc}") from None
        return out

    def encode(self, msg_id: int, **values: object) -> bytes:
        return protocol.encode(self.texts(msg_id, values))

    def _leading(self, msg_id: int, leading: Mapping[str, object]) -> tuple[Layout, list[str]]:
        """The id, the version field and ``leading`` (which must be a leading run of the layout's fields)."""
        lay, head = self._head(msg_id)
        names = lay.fields[: len(leading)]
        if set(names) != leading.keys():
            raise ValueError(f"{sorted(leading)} are not the leading fields {names} of message {msg_id}")
        kinds = lay.kinds[: len(leading)]
        return lay, head + [_TEXT_OF[kind](leading[name]) for name, kind in zip(names, kinds, strict=True)]

    def truncated(self, msg_id: int, **leading: object) -> bytes:
        """Only the ``leading`` fields of the message (a deliberately short frame, for faults)."""
        return protocol.encode(self._leading(msg_id, leading)[1])

    def template(self, msg_id: int, **leading: object) -> FrameTemplate:
        """Pre-encode the id, the version field and the ``leading`` fields; the template takes the rest."""
        lay, fixed = self._leading(msg_id, leading)
        newest = LAYOUTS[msg_id][-1]
        if newest.fields[: len(leading)] != lay.fields[: len(leading)]:
            raise ValueError(f"the leading fields of message {msg_id} differ between versions")
        return FrameTemplate(protocol.field_text(fixed), newest.fields[len(leading) :], lay)


@functools.cache
def encoder_for(server_version: int) -> WireEncoder:
    """The (shared, immutable) encoder of a negotiated server version."""
    return WireEncoder(server_version)
