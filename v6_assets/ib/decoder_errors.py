"""The process-wide count of IB messages ib_async could not decode (reported as ``malformed_messages``).

ib_async's decoder logs such a message (malformed frame, truncated message) at ERROR on ``ib_async.Decoder`` and
drops it; a logging handler on that logger is the only place to see it.
"""

from __future__ import annotations

import logging
import threading


class DecoderErrorCounter(logging.Handler):
    """ib_async logs and drops messages it cannot decode (malformed frame, truncated message): count them."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


_decoder_errors: DecoderErrorCounter | None = None
_decoder_errors_lock = threading.Lock()


def decoder_error_counter() -> DecoderErrorCounter:
    """The process-wide count of frames ib_async could not decode (``ib_async.Decoder`` errors).

    Attached to that logger on first use (the first streamer start) rather than at import: importing ``v6_assets.ib``
    must leave the process's logging alone. The streamer attaches it before its first connection, so every message
    of its own is counted.
    """
    global _decoder_errors
    with _decoder_errors_lock:
        if _decoder_errors is None:
            _decoder_errors = DecoderErrorCounter()
            logging.getLogger("ib_async.Decoder").addHandler(_decoder_errors)
        return _decoder_errors
