"""How much one socket read hands to ib_async at once.

ib_async frames what it reads by slicing its ``bytes`` buffer once per message (``client._onSocketHasData``), so the
bytes it copies grow with the square of the read: asyncio's selector transport reads up to 256 KiB at once, and a
burst read that size (~2,300 portfolio messages) copies ~300 MB, several µs per message -- more than our whole
conversion of it (measured with ``bench.ingest_profile``). Smaller reads cut that copying to a fraction; the price is
one spool transaction per read (a few hundred messages each), which costs far less. Nothing of ib_async is changed:
the read size is an attribute of our connection's asyncio transport (``max_size`` of CPython's selector transports;
where a transport has no such attribute it is left alone).
"""

from __future__ import annotations

from typing import Any

READ_BYTES = 32 * 1024


def limit_reads(ib: Any, read_bytes: int = READ_BYTES) -> bool:
    """Cap the reads of ``ib``'s connected socket at ``read_bytes``; False when the transport has no such knob."""
    transport = getattr(ib.client.conn, "transport", None)
    if transport is None or not isinstance(getattr(transport, "max_size", None), int):
        return False
    transport.max_size = read_bytes
    return True
