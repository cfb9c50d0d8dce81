"""How many portfolio / PnL-single messages per second the gateway simulator sustains to one raw-socket client.

The simulator runs in this process (its own loop thread) in blast mode over a synthetic book; the client is a
separate process (so it does not share our GIL) that handshakes, subscribes to the account's portfolio and to
reqPnLSingle for every position, then reads and counts frames. The rate is messages / (last - first byte time)
as measured by the client (blast traffic plus the ordinary periodic PnL updates that arrive meanwhile).
Goal: >= 50,000 messages/s on a 2-core machine.

    .venv/bin/python -m bench.sim_throughput [--positions 2000] [--messages 400000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import socket
import struct
import sys
import time
from multiprocessing.connection import Connection

from v6_assets.gateway_sim import GatewaySimulator, synthetic_scenario

GOAL_PER_SECOND = 50_000
DONE_CODE = b"9999"


def _send(sock: socket.socket, *fields: object) -> None:
    payload = "".join(f"{f}\0" for f in fields).encode()
    sock.sendall(struct.pack(">I", len(payload)) + payload)


def _client(port: int, account: str, con_ids: list[int], pipe: Connection) -> None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    payload = b"v157..178"
    sock.sendall(b"API\0" + struct.pack(">I", len(payload)) + payload)
    _send(sock, 71, 2, 77, "")
    _send(sock, 6, 2, 1, account)
    for req_id, con_id in enumerate(con_ids, start=1):
        _send(sock, 94, req_id, account, "", con_id)
    buffer = bytearray()
    counts = {"7": 0, "95": 0, "done": 0}

    def drain_frames() -> int:
        offset, frames = 0, 0
        while len(buffer) - offset >= 4:
            (length,) = struct.unpack_from(">I", buffer, offset)
            if len(buffer) - offset - 4 < length:
                break
            head = bytes(buffer[offset + 4 : offset + 4 + min(length, 24)]).split(b"\0")
            msg_id = head[0].decode()
            if msg_id in counts:
                counts[msg_id] += 1
                frames += 1
            elif msg_id == "4" and len(head) > 3 and head[3] == DONE_CODE:
                counts["done"] = 1
            offset += 4 + length
        del buffer[:offset]
        return frames

    # setup: wait until the account download ended and every PnL-single answered once
    setup_deadline = time.monotonic() + 60
    while counts["95"] < len(con_ids) and time.monotonic() < setup_deadline:
        buffer += sock.recv(1 << 20)
        drain_frames()
    counts["7"] = counts["95"] = 0
    pipe.send("ready")
    received = 0
    first = last = 0.0
    while not counts["done"]:  # the server signals the end of the blast with a marker error message
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        now = time.perf_counter()
        if not first:
            first = now
        buffer += chunk
        got = drain_frames()
        if got:
            received += got
            last = now
    pipe.send({"received": received, "seconds": last - first, "portfolio": counts["7"], "pnl_single": counts["95"]})
    sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--positions", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=400_000)
    args = parser.parse_args(argv)
    scenario = synthetic_scenario(args.positions)
    account = scenario.account_ids[0]
    con_ids = [p.con_id for p in scenario.positions]
    # min_real_interval keeps periodic traffic out of the measurement; blast messages are all we count.
    with GatewaySimulator(scenario, speed=1.0, keep_sent=False).running() as sim:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_client, args=(sim.port, account, con_ids, child), daemon=True)
        proc.start()
        if not parent.poll(90) or parent.recv() != "ready":
            print("client did not become ready", file=sys.stderr)
            return 1
        started = time.perf_counter()
        sent = sim.blast(args.messages, timeout=300)
        server_seconds = time.perf_counter() - started
        sim.send_error(int(DONE_CODE), "blast done")
        result = parent.recv() if parent.poll(120) else {"received": 0, "seconds": 0.0}
        proc.join(10)
    rate = result["received"] / result["seconds"] if result["seconds"] else 0.0
    report = {
        "positions": args.positions,
        "messages_sent": sent,
        "messages_received": result["received"],
        "client_seconds": round(result["seconds"], 3),
        "server_seconds": round(server_seconds, 3),
        "messages_per_second": round(rate),
        "goal_per_second": GOAL_PER_SECOND,
        "meets_goal": rate >= GOAL_PER_SECOND,
    }
    print(json.dumps(report))
    return 0 if rate >= GOAL_PER_SECOND else 1


if __name__ == "__main__":
    sys.exit(main())
