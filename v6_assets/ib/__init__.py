"""The IB side: typed events, conversion from ib_async, the streamer, connection management, the spool.

No Dagster imports here.
"""

from v6_assets.ib.models import GreeksUpdate, PositionUpdate

__all__ = ["GreeksUpdate", "PositionUpdate"]
