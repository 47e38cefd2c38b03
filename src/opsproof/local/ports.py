"""Loopback ports for the servers opsproof starts itself (throwaway databases, demo and test servers).

A port is only free the moment it is looked at: the server binds it a little later. A port the
kernel picks (a bind to port 0) comes from the range it also takes every outgoing connection's
source port from (`ip_local_port_range`), so in between any connection on the machine may take
it, and the server's bind fails with EADDRINUSE (seen in the test suite, whose probes make
thousands of connections). So a free port is looked for below that range first, where the kernel
never puts a connection's source port; only another server binding the same port can take it.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Below the ephemeral range: at most this many ports tried, from at least this port up.
_TRIES = 64
_LOWEST = 10_000
_chooser = random.Random()  # its own: a test that seeds the module's random must not make runs choose alike


def free_port(preferred: int) -> int:
    """`preferred` when nothing listens there, else a free port below the ephemeral range (any free one at worst)."""
    for port in (*([preferred] if preferred else []), *_below_ephemeral(), 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise OSError("no free port on 127.0.0.1")


def _below_ephemeral() -> list[int]:
    """Ports to try, at random, between _LOWEST and the kernel's ephemeral range (none where it cannot be read)."""
    try:
        low = int(_EPHEMERAL.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    if low - _LOWEST < _TRIES:
        return []
    return _chooser.sample(range(_LOWEST, low), _TRIES)
