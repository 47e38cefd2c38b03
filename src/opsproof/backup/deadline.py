"""One overall deadline for blocking S3 calls made in a thread: at the deadline, its sockets are shut.

botocore's `read_timeout` bounds each socket read, not a whole answer: a server (or a proxy)
that drips one byte every 0.25 s never trips it, and a `timeout: 1s` item took 30 s and more.
A thread cannot be cancelled, but its socket can: the S3 clients made here use connection
pools that note which thread took which connection, and a watchdog shuts the sockets of a
thread whose deadline has passed. The blocked read then fails at once, and the caller,
seeing `watch.expired`, says it timed out::

    with deadline(time.monotonic() + timeout) as watch:
        listed = store.list(pattern, limit)      # StoreError at the deadline
    if watch.expired: ...
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

TICK_S = 0.05  # how late after its deadline a socket may be shut


@dataclass
class Watch:
    """One thread's deadline, and whether it passed while the thread was inside it."""

    at: float
    expired: bool = False
    connections: list[Any] = field(default_factory=list)


_lock = threading.Lock()
_watches: dict[int, Watch] = {}
_watchdog: threading.Thread | None = None


def _shut(connection: Any) -> None:
    sock = getattr(connection, "opsproof_sock", None) or getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _watch_forever() -> None:
    while True:
        time.sleep(TICK_S)
        now = time.monotonic()
        with _lock:
            due = [w for w in _watches.values() if not w.expired and w.at <= now]
            for watch in due:
                watch.expired = True
        for watch in due:
            for connection in list(watch.connections):
                _shut(connection)


@contextlib.contextmanager
def deadline(at: float) -> Iterator[Watch]:
    """Within the block, S3 calls of this thread end at monotonic time `at` (their sockets are shut)."""
    global _watchdog
    ident = threading.get_ident()
    watch = Watch(at)
    with _lock:
        _watches[ident] = watch
        if _watchdog is None:
            _watchdog = threading.Thread(target=_watch_forever, name="opsproof-deadlines", daemon=True)
            _watchdog.start()
    try:
        yield watch
    finally:
        with _lock:
            _watches.pop(ident, None)
        if watch.expired:
            for connection in watch.connections:  # a cut connection must not go back to the pool alive
                _shut(connection)


def note_connection(connection: Any) -> None:
    """Called by the pools when this thread takes a connection: shut it at the thread's deadline."""
    with _lock:
        watch = _watches.get(threading.get_ident())
        if watch is None:
            return
        watch.connections.append(connection)
        expired = watch.expired
    if expired:
        _shut(connection)


def track_connections(client: Any) -> None:
    """Make a boto3 client's pools note their connections (botocore's own classes, one method more)."""
    from botocore import awsrequest

    class Held:
        """A connection that keeps hold of its socket: http.client drops `sock` when a response takes it over."""

        sock: Any

        def connect(self) -> None:
            super().connect()  # type: ignore[misc]
            self.opsproof_sock = self.sock

    class Noting:
        """A pool that notes which thread takes which connection."""

        def _get_conn(self, timeout: float | None = None) -> Any:
            connection = super()._get_conn(timeout)  # type: ignore[misc]
            note_connection(connection)
            return connection

    class Connection(Held, awsrequest.AWSHTTPConnection):  # type: ignore[misc]
        pass

    class TlsConnection(Held, awsrequest.AWSHTTPSConnection):  # type: ignore[misc]
        pass

    class Pool(Noting, awsrequest.AWSHTTPConnectionPool):  # type: ignore[misc]
        ConnectionCls = Connection

    class TlsPool(Noting, awsrequest.AWSHTTPSConnectionPool):  # type: ignore[misc]
        ConnectionCls = TlsConnection

    session = client._endpoint.http_session  # botocore's URLLib3Session: no public hook for its pools
    classes = {"http": Pool, "https": TlsPool}
    session._pool_classes_by_scheme = classes
    session._manager.pool_classes_by_scheme = classes
