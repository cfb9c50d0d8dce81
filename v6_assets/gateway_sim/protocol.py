"""TWS socket protocol framing and the message ids the simulator speaks (verified against ib_async 2.1.0).

Every message after the ``API\\0`` greeting is a 4-byte big-endian length followed by NUL-terminated fields.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable

from v6_assets.contracts.unset import IB_UNSET_DOUBLE

UNSET_DOUBLE = IB_UNSET_DOUBLE  # what IB sends for a double without a value (the rule: v6_assets.contracts.unset)
UNSET_INTEGER = 2**31 - 1
SERVER_MAX_VERSION = 178
SERVER_MIN_VERSION = 100
# Version gates the simulator honours (names and values from IB's ibapi ``server_versions``, MIN_SERVER_VER_*).
MIN_VERSION_FRACTIONAL_POSITIONS = 101  # positions (messages 7, 61) are decimals, integers before
MIN_VERSION_MODELS_SUPPORT = 103  # reqAccountUpdatesMulti and its answers (73, 74) exist
MIN_VERSION_PNL = 127  # reqPnL / reqPnLSingle and their answers (94, 95) exist
MIN_VERSION_UNREALIZED_PNL = 129  # PnL and PnL single gain unrealizedPnL
MIN_VERSION_REALIZED_PNL = 135  # PnL and PnL single gain realizedPnL
MIN_VERSION_LAST_LIQUIDITY = 136  # execDetails drops its version field and gains lastLiquidity
MIN_VERSION_COMPLETED_ORDERS = 150  # reqCompletedOrders and COMPLETED_ORDERS_END (102) exist
MIN_VERSION_PRICE_BASED_VOLATILITY = 156  # tick 21 drops its version field and gains tickAttrib
MIN_VERSION_FRACTIONAL_SIZE_SUPPORT = 163  # sizes (tick 1, 2) and PnL single's position are decimals
MIN_VERSION_ADVANCED_ORDER_REJECT = 166  # ERR_MSG gains advancedOrderRejectJson
MIN_VERSION_PENDING_PRICE_REVISION = 178  # execDetails gains pendingPriceRevision

LENGTH = struct.Struct(">I")
MAX_FRAME_BYTES = 16 * 1024 * 1024
_INFINITY = math.inf
_HANDSHAKE_RE = re.compile(r"^v(\d+)(?:\.\.(\d+))?(?: (.*))?$")


class ProtocolError(ValueError):
    """A client sent something the TWS protocol does not allow."""


# Incoming (client -> server) message ids.
class In:
    REQ_MKT_DATA = 1
    CANCEL_MKT_DATA = 2
    PLACE_ORDER = 3
    CANCEL_ORDER = 4
    REQ_OPEN_ORDERS = 5
    REQ_ACCT_DATA = 6
    REQ_EXECUTIONS = 7
    REQ_IDS = 8
    REQ_CONTRACT_DATA = 9
    REQ_AUTO_OPEN_ORDERS = 15
    REQ_ALL_OPEN_ORDERS = 16
    EXERCISE_OPTIONS = 21
    REQ_CURRENT_TIME = 49
    REQ_GLOBAL_CANCEL = 58
    REQ_MARKET_DATA_TYPE = 59
    REQ_POSITIONS = 61
    REQ_ACCOUNT_SUMMARY = 62
    CANCEL_ACCOUNT_SUMMARY = 63
    CANCEL_POSITIONS = 64
    START_API = 71
    REQ_ACCOUNT_UPDATES_MULTI = 76
    CANCEL_ACCOUNT_UPDATES_MULTI = 77
    REQ_PNL = 92
    CANCEL_PNL = 93
    REQ_PNL_SINGLE = 94
    CANCEL_PNL_SINGLE = 95
    REQ_COMPLETED_ORDERS = 99


ORDER_REQUESTS = {In.PLACE_ORDER: "placeOrder", In.CANCEL_ORDER: "cancelOrder", In.REQ_GLOBAL_CANCEL: "reqGlobalCancel",
                  In.EXERCISE_OPTIONS: "exerciseOptions"}  # fmt: skip


# Outgoing (server -> client) message ids.
class Out:
    TICK_PRICE = 1
    TICK_SIZE = 2
    ERR_MSG = 4
    ACCT_VALUE = 6
    PORTFOLIO_VALUE = 7
    ACCT_UPDATE_TIME = 8
    NEXT_VALID_ID = 9
    EXECUTION_DATA = 11
    MANAGED_ACCTS = 15
    TICK_OPTION_COMPUTATION = 21
    CURRENT_TIME = 49
    OPEN_ORDER_END = 53
    ACCT_DOWNLOAD_END = 54
    EXECUTION_DATA_END = 55
    TICK_SNAPSHOT_END = 57
    MARKET_DATA_TYPE = 58
    COMMISSION_REPORT = 59
    POSITION_DATA = 61
    POSITION_END = 62
    ACCOUNT_SUMMARY_END = 64
    ACCOUNT_UPDATE_MULTI = 73
    ACCOUNT_UPDATE_MULTI_END = 74
    PNL = 94
    PNL_SINGLE = 95
    COMPLETED_ORDERS_END = 102


def fmt(value: object) -> str:
    """One field as TWS writes it: floats with repr (round-trips exactly), bools as 1/0, None as empty."""
    if type(value) is float and -_INFINITY < value < _INFINITY:
        return repr(value)  # the common case first: this runs for every float field of every message
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        if math.isinf(value):
            return "Infinite"
        return repr(value)
    return str(value)


def field_text(fields: Iterable[object]) -> str:
    """Fields as NUL-terminated text (no framing)."""
    parts = list(map(fmt, fields))
    return "\0".join(parts) + "\0" if parts else ""


def encode(fields: Iterable[object]) -> bytes:
    payload = field_text(fields).encode()
    return LENGTH.pack(len(payload)) + payload


def encode_raw(payload: bytes) -> bytes:
    """Frame an arbitrary payload (used for the malformed-frame fault)."""
    return LENGTH.pack(len(payload)) + payload


def split_frames(buffer: bytearray) -> list[list[str]]:
    """Pop every complete frame off ``buffer`` and return their field lists (trailing empty piece dropped)."""
    messages: list[list[str]] = []
    offset = 0
    while len(buffer) - offset >= 4:
        (length,) = LENGTH.unpack_from(buffer, offset)
        if length > MAX_FRAME_BYTES:
            raise ProtocolError(f"frame of {length} bytes exceeds the {MAX_FRAME_BYTES} byte limit")
        end = offset + 4 + length
        if len(buffer) < end:
            break
        text = bytes(buffer[offset + 4 : end]).decode(errors="backslashreplace")
        fields = text.split("\0")
        if fields and fields[-1] == "":
            fields.pop()
        messages.append(fields)
        offset = end
    del buffer[:offset]
    return messages


def parse_handshake(text: str) -> tuple[int, int, str]:
    """``v157..178 opts`` -> (min, max, options); a single ``v157`` means min = max."""
    match = _HANDSHAKE_RE.match(text.strip())
    if not match:
        raise ProtocolError(f"bad version handshake {text!r}: expected 'v<min>..<max>'")
    low = int(match.group(1))
    high = int(match.group(2)) if match.group(2) else low
    if high < low:
        raise ProtocolError(f"bad version range {low}..{high}")
    return low, high, match.group(3) or ""


def negotiate(client_min: int, client_max: int) -> int | None:
    """The version to answer with, or None when no common version exists (the server closes)."""
    version = min(client_max, SERVER_MAX_VERSION)
    if version < client_min or version < SERVER_MIN_VERSION:
        return None
    return version


def to_float(text: str, name: str) -> float:
    """Parse a numeric field tolerantly ('600', '600.0', '' -> 0.0 as ib_async sends unset as empty)."""
    if text == "":
        return 0.0
    try:
        return float(text)
    except ValueError:
        raise ProtocolError(f"field {name}={text!r} is not a number")


def to_int(text: str, name: str) -> int:
    if text == "":
        return 0
    try:
        return int(float(text))
    except ValueError:
        raise ProtocolError(f"field {name}={text!r} is not an integer")
