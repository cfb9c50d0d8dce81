"""The one wire encoder: every message the simulator sends is laid out here, per negotiated server version.

``LAYOUTS`` maps each outgoing message id to its layouts -- the message's own version field and its field names in
wire order -- in ascending ``since`` (the first server version using that layout). A client's encoder picks, per
message, the last layout its negotiated version reaches. Field rules that change between server versions belong
in this table, not at the call sites.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from v6_assets.gateway_sim import protocol
from v6_assets.gateway_sim.protocol import Out
from v6_assets.gateway_sim.scenario_model import ContractSpec

_pack_length = protocol.LENGTH.pack


@dataclass(frozen=True, slots=True)
class Layout:
    """One message's wire layout from server version ``since`` on."""

    since: int
    version: int | None  # the message's own version field; None when the message has none
    fields: tuple[str, ...]
    defaults: Mapping[str, object] = field(default_factory=dict)  # values callers may leave out


# The contract part of portfolio and position rows (``exchange`` is the primary exchange in portfolio rows).
CONTRACT_FIELDS = ("con_id", "symbol", "sec_type", "expiry", "strike", "right", "multiplier", "exchange", "currency",
                   "local_symbol", "trading_class")  # fmt: skip
# Fields whose values are text (the others are numbers); templates format the two kinds differently.
TEXT_FIELDS = frozenset({"symbol", "sec_type", "expiry", "right", "multiplier", "exchange", "currency", "local_symbol",
                         "trading_class", "account", "accounts", "message", "advanced_order_reject_json", "key",
                         "value", "model_code", "time"})  # fmt: skip
_GREEKS = ("implied_vol", "delta", "opt_price", "pv_dividend", "gamma", "vega", "theta", "und_price")

LAYOUTS: dict[int, tuple[Layout, ...]] = {
    Out.TICK_PRICE: (Layout(0, 6, ("req_id", "tick_type", "price", "size", "attrib_mask")),),
    Out.ERR_MSG: (
        Layout(0, 2, ("req_id", "code", "message")),
        Layout(
            protocol.MIN_VERSION_ADVANCED_ORDER_REJECT,
            2,
            ("req_id", "code", "message", "advanced_order_reject_json"),
            {"advanced_order_reject_json": ""},
        ),
    ),
    Out.ACCT_VALUE: (Layout(0, 2, ("key", "value", "currency", "account")),),
    Out.PORTFOLIO_VALUE: (
        Layout(
            0,
            8,
            (
                *CONTRACT_FIELDS,
                "position",
                "market_price",
                "market_value",
                "average_cost",
                "unrealized_pnl",
                "realized_pnl",
                "account",
            ),
        ),
    ),
    Out.ACCT_UPDATE_TIME: (Layout(0, 1, ("time",)),),
    Out.NEXT_VALID_ID: (Layout(0, 1, ("order_id",)),),
    Out.MANAGED_ACCTS: (Layout(0, 1, ("accounts",)),),
    Out.TICK_OPTION_COMPUTATION: (
        Layout(0, 6, ("req_id", "tick_type", *_GREEKS)),
        # the version field goes, tickAttrib comes after the tick type
        Layout(
            protocol.MIN_VERSION_PRICE_BASED_VOLATILITY,
            None,
            ("req_id", "tick_type", "tick_attrib", *_GREEKS),
            {"tick_attrib": 0},
        ),
    ),
    Out.CURRENT_TIME: (Layout(0, 1, ("time",)),),
    Out.OPEN_ORDER_END: (Layout(0, 1, ()),),
    Out.ACCT_DOWNLOAD_END: (Layout(0, 1, ("account",)),),
    Out.EXECUTION_DATA_END: (Layout(0, 1, ("req_id",)),),
    Out.TICK_SNAPSHOT_END: (Layout(0, 1, ("req_id",)),),
    Out.POSITION_DATA: (Layout(0, 3, ("account", *CONTRACT_FIELDS, "position", "average_cost")),),
    Out.POSITION_END: (Layout(0, 1, ()),),
    Out.ACCOUNT_SUMMARY_END: (Layout(0, 1, ("req_id",)),),
    Out.ACCOUNT_UPDATE_MULTI: (Layout(0, 1, ("req_id", "account", "model_code", "key", "value", "currency")),),
    Out.ACCOUNT_UPDATE_MULTI_END: (Layout(0, 1, ("req_id",)),),
    Out.PNL: (Layout(0, None, ("req_id", "daily_pnl", "unrealized_pnl", "realized_pnl")),),
    Out.PNL_SINGLE: (Layout(0, None, ("req_id", "position", "daily_pnl", "unrealized_pnl", "realized_pnl", "value")),),
    Out.COMPLETED_ORDERS_END: (Layout(0, None, ()),),
}


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


def account_time(now: datetime) -> str:
    """ACCT_UPDATE_TIME's ``HH:MM`` in the protocol zone."""
    return now.astimezone(protocol_zone()).strftime("%H:%M")


def raw_frame(payload: bytes) -> bytes:
    """Frame an arbitrary payload as is -- only for faults that send what no layout allows."""
    return protocol.encode_raw(payload)


class FrameTemplate:
    """A message whose leading fields are encoded once; ``encode`` adds the rest (the blast's hot path).

    The remaining fields are written by one ``str.format``: text fields as they are, numbers with ``repr`` -- what
    ``protocol.fmt`` writes for ints and finite floats, the only numbers a template may be given.
    """

    __slots__ = ("_format", "_prefix", "remaining")

    def __init__(self, prefix: str, remaining: tuple[str, ...]) -> None:
        if not remaining:
            raise ValueError("a template needs at least one remaining field")
        self._prefix = prefix
        self.remaining = remaining
        self._format = "".join("{}\0" if name in TEXT_FIELDS else "{!r}\0" for name in remaining)

    def encode(self, *values: object) -> bytes:
        """The frame with ``values`` as the remaining fields, in layout order."""
        if len(values) != len(self.remaining):
            raise ValueError(f"expected values for {self.remaining}, got {len(values)}")
        payload = (self._prefix + self._format.format(*values)).encode()
        return _pack_length(len(payload)) + payload


class WireEncoder:
    """Encodes outgoing messages for one negotiated server version."""

    def __init__(self, server_version: int) -> None:
        self.server_version = server_version
        self._layouts = {msg_id: self._pick(msg_id, options) for msg_id, options in LAYOUTS.items()}
        self._field_sets = {msg_id: frozenset(layout.fields) for msg_id, layout in self._layouts.items()}

    def _pick(self, msg_id: int, options: tuple[Layout, ...]) -> Layout:
        usable = [layout for layout in options if layout.since <= self.server_version]
        if not usable:
            raise ValueError(f"message {msg_id} has no layout for server version {self.server_version}")
        return usable[-1]

    def layout(self, msg_id: int) -> Layout:
        try:
            return self._layouts[msg_id]
        except KeyError:
            raise ValueError(f"no wire layout for outgoing message {msg_id}")

    def _head(self, msg_id: int) -> tuple[Layout, list[object]]:
        layout = self.layout(msg_id)
        return layout, [msg_id] if layout.version is None else [msg_id, layout.version]

    def fields(self, msg_id: int, values: Mapping[str, object]) -> list[object]:
        """The message's full field list (id and version field included) from named ``values``."""
        layout, head = self._head(msg_id)
        unknown = values.keys() - self._field_sets[msg_id]
        if unknown:
            raise ValueError(f"message {msg_id} has no fields {sorted(unknown)} at v{self.server_version}")
        try:
            return head + [values[name] if name in values else layout.defaults[name] for name in layout.fields]
        except KeyError as missing:
            raise ValueError(f"message {msg_id} needs field {missing}")

    def encode(self, msg_id: int, **values: object) -> bytes:
        return protocol.encode(self.fields(msg_id, values))

    def _leading(self, msg_id: int, leading: Mapping[str, object]) -> tuple[Layout, list[object]]:
        """The id, the version field and ``leading`` (which must be a leading run of the layout's fields)."""
        layout, head = self._head(msg_id)
        names = layout.fields[: len(leading)]
        if set(names) != leading.keys():
            raise ValueError(f"{sorted(leading)} are not the leading fields {names} of message {msg_id}")
        return layout, head + [leading[name] for name in names]

    def truncated(self, msg_id: int, **leading: object) -> bytes:
        """Only the ``leading`` fields of the message (a deliberately short frame, for faults)."""
        return protocol.encode(self._leading(msg_id, leading)[1])

    def template(self, msg_id: int, **leading: object) -> FrameTemplate:
        """Pre-encode the id, the version field and the ``leading`` fields; the template takes the rest."""
        layout, fixed = self._leading(msg_id, leading)
        return FrameTemplate(protocol.field_text(fixed), layout.fields[len(leading) :])


@functools.cache
def encoder_for(server_version: int) -> WireEncoder:
    """The (shared, immutable) encoder of a negotiated server version."""
    return WireEncoder(server_version)
