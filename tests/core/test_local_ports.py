"""Loopback ports for the servers opsproof starts: chosen where no outgoing connection can take them meanwhile.

A port the kernel hands out for a bind to port 0 is one it may also give the next outgoing
connection as its source port, before the server binds it (a test server's bind failed so with
EADDRINUSE while the suite's probes connected). Real sockets on this machine's loopback.
"""

from __future__ import annotations

import socket
from pathlib import Path

from opsproof.local.ports import free_port


def _ephemeral_range() -> tuple[int, int]:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def test_a_free_port_is_below_the_range_outgoing_connections_take_their_source_ports_from() -> None:
    low, _ = _ephemeral_range()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        # Connections of our own: each takes a source port from the ephemeral range.
        clients = [socket.create_connection(listener.getsockname()) for _ in range(20)]
        try:
            sources = {client.getsockname()[1] for client in clients}
            assert all(port >= low for port in sources)
            chosen = {free_port(0) for _ in range(20)}
        finally:
            for client in clients:
                client.close()
    assert all(10_000 <= port < low for port in chosen), sorted(chosen)
    assert len(chosen) > 1  # at random, so two servers started together seldom try the same one


def test_the_preferred_port_when_it_is_free_and_another_when_a_server_has_it() -> None:
    port = free_port(0)
    assert free_port(port) == port
    with socket.create_server(("127.0.0.1", port)):
        other = free_port(port)
    assert other != port
    with socket.create_server(("127.0.0.1", other)):  # the port it gave is one a server can bind
        pass
