"""The streamers of several gateways (``V6_IB_GATEWAYS``, see ``gateway_config``): one single-gateway streamer each."""

from __future__ import annotations

from v6_assets.ib.settings import StreamerSettings
from v6_assets.ib.streamer import IBPositionStreamer


def gateway_streamer(settings: StreamerSettings) -> IBPositionStreamer:
    """The process-wide streamer of one gateway: today's one (``IBPositionStreamer()``) for the unnamed gateway of
    ``V6_IB_HOST``..., one per name for the gateways of ``V6_IB_GATEWAYS``."""
    return IBPositionStreamer(settings.gateway or None)


def describe_gateway(settings: StreamerSettings) -> str:
    """``gateway fund-a (127.0.0.1:4002 client 61)``; for the one unnamed gateway its stream id."""
    if not settings.gateway:
        return settings.stream_id
    return f"gateway {settings.gateway} ({settings.host}:{settings.port} client {settings.client_id})"
