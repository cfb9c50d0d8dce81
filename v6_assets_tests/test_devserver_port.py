"""``port_is_free``: a port left in TIME_WAIT by a stopped server is free (restart after Ctrl-C); a listener is not."""

from __future__ import annotations

import socket

from v6_assets.devserver import LOOPBACK, port_is_free


def _time_wait_port() -> int:
    """A port whose server closed an accepted connection first (the server side is left in TIME_WAIT), then stopped
    listening: what a webserver stopped with Ctrl-C leaves behind."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((LOOPBACK, 0))
        server.listen(1)
        port = int(server.getsockname()[1])
        client = socket.create_connection((LOOPBACK, port))
        conn, _ = server.accept()
        conn.close()  # the server closes first: its side of the connection goes to TIME_WAIT
        client.recv(1)  # EOF
        client.close()
    return port


def test_port_in_time_wait_is_free() -> None:
    port = _time_wait_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as plain:  # the old check (no SO_REUSEADDR) failed here
        try:
            plain.bind((LOOPBACK, port))
            in_time_wait = False
        except OSError:
            in_time_wait = True
    assert in_time_wait, "the test did not leave the port in TIME_WAIT"
    assert port_is_free(port)


def test_listening_port_is_not_free() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((LOOPBACK, 0))
        server.listen(1)
        assert not port_is_free(int(server.getsockname()[1]))
