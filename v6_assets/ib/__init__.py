"""The IB side: typed events, conversion from ib_async, the streamer, connection management, the spool.

No Dagster imports here. Importing this package connects to nothing.
"""

from v6_assets.contracts.streams import GreeksUpdate, PositionUpdate
from v6_assets.ib.fanout import GreeksUpdateHandler, HandlerStats, PositionUpdateHandler
from v6_assets.ib.lease import ConnectionLease, LeaseHolder
from v6_assets.ib.settings import SettingsError, StreamerSettings
from v6_assets.ib.spool import Spool, SpoolError, SpoolFrames, SpoolFullError, SpoolRecord
from v6_assets.ib.status import ConnectionStatus, SpoolStatus, StreamCounters, StreamerStatus, SubscriptionStatus
from v6_assets.ib.streamer import IBPositionStreamer

__all__ = [
    "ConnectionLease",
    "ConnectionStatus",
    "GreeksUpdate",
    "GreeksUpdateHandler",
    "HandlerStats",
    "IBPositionStreamer",
    "LeaseHolder",
    "PositionUpdate",
    "PositionUpdateHandler",
    "SettingsError",
    "Spool",
    "SpoolError",
    "SpoolFrames",
    "SpoolFullError",
    "SpoolRecord",
    "SpoolStatus",
    "StreamCounters",
    "StreamerSettings",
    "StreamerStatus",
    "SubscriptionStatus",
]
