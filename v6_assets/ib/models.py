"""The events the streamer emits. They are contract objects: defined in ``v6_assets.contracts.streams``, which the
spool, the lake and the analytics derive their fields from; re-exported here for the ib package's users."""

from v6_assets.contracts.streams import (
    GREEKS_UPDATE_FIELDS,
    POSITION_UPDATE_FIELDS,
    GreeksUpdate,
    PositionSource,
    PositionUpdate,
)

__all__ = ["GREEKS_UPDATE_FIELDS", "POSITION_UPDATE_FIELDS", "GreeksUpdate", "PositionSource", "PositionUpdate"]
