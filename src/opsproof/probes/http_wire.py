"""The `http` kind's lean HTTP/1.1 client: asyncio's bare Protocol and Transport, no streams, no tasks.

aiohttp spent more than half of the probe process's ~0.24 ms of CPU per request (its URL
objects, connector, writer, parser, timers and tasks), and ~90 ms to import. A health check
needs one read-only request and its whole answer, so this client does exactly that, the way
aiohttp does it (tests/kinds/test_http_wire.py compares the two on scripted servers):

- the same request bytes: the request line as yarl re-quotes it (`http_urls`), Host (the
  port when not the default), User-Agent, Accept `*/*`, Accept-Encoding `gzip, deflate`, the
  target's headers, Basic auth in UTF-8;
- HTTP/1.1 keep-alive: one pool per run keyed by (scheme, host, port, TLS context), so
  `_confirm`'s second sample reuses the first one's connection; a request that finds its
  connection closed (or reset) before the answer's head is sent once more, as aiohttp does;
- bodies framed by Content-Length, chunked or the connection's close, none for HEAD, 1xx,
  204 and 304; gzip and deflate decoded; at most `max_body + 1` decoded bytes read;
- redirects when asked: at most 10, 303 turns into GET (not HEAD), the Location resolved
  against the URL that answered, Authorization, Cookie and Proxy-Authorization dropped when
  the origin changes;
- TLS with the contexts `ssl_context_for` gives aiohttp;
- every failure in the words `describe_http_error` gives aiohttp's (`ExchangeFailed`).

What it does not do it refuses with `ForAiohttp` before anything is sent — or, for a
redirect to a Location it does not parse, mid-chain — and the probe asks aiohttp instead:
URLs outside `http_urls`'s set and a Location with user info or another scheme.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from base64 import b64encode
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Any

from opsproof.errors import OpsproofError
from opsproof.probes import describe_connect_error
from opsproof.probes.http_answer import Connection, Disconnected, ExchangeFailed, WireAnswer, read_answer
from opsproof.probes.http_urls import WireUrl, joined

USER_AGENT = "opsproof/0.1 (read-only health check)"
# aiohttp's default: gzip and deflate (it adds br and zstd only when Brotli or backports.zstd is installed).
ACCEPT_ENCODING = "gzip, deflate"
MAX_REDIRECTS = 10
_DROPPED_ACROSS_ORIGINS = ("authorization", "cookie", "proxy-authorization")


class ForAiohttp(OpsproofError):
    """The target needs something this client does not do: the probe asks aiohttp."""


# --- TLS ------------------------------------------------------------------------------------


@cache
def verifying_context() -> ssl.SSLContext:
    """aiohttp's default verifying context, made once and only when an https target verifies with the system's CAs."""
    context = ssl.create_default_context()
    context.set_alpn_protocols(("http/1.1",))
    return context


@cache
def unverified_context() -> ssl.SSLContext:
    """aiohttp's context for `verify_tls: false` (no trust store: it verifies nothing)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.options |= ssl.OP_NO_COMPRESSION
    context.set_alpn_protocols(("http/1.1",))
    return context


def _tls(given: ssl.SSLContext | bool) -> ssl.SSLContext:
    if given is True:
        return verifying_context()
    if given is False:
        return unverified_context()
    return given


# --- the connection -------------------------------------------------------------------------


# --- the pool and the exchange ----------------------------------------------------------------

PoolKey = tuple[str, str, int, Any]


@dataclass
class Pool:
    """The run's connections (idle ones by origin and TLS context) and name resolutions."""

    idle: dict[PoolKey, list[Connection]] = field(default_factory=dict)
    resolved: dict[tuple[str, int], asyncio.Future[list[tuple[Any, ...]]]] = field(default_factory=dict)
    opened: int = 0  # connections opened (the tests count reuse)

    def close(self) -> None:
        for connections in self.idle.values():
            for connection in connections:
                connection.close()
        self.idle.clear()

    def checkout(self, key: PoolKey) -> Connection | None:
        connections = self.idle.get(key)
        while connections:
            connection = connections.pop()
            if connection.reusable:
                return connection
            connection.close()
        return None

    def checkin(self, key: PoolKey, connection: Connection) -> None:
        if connection.reusable:
            self.idle.setdefault(key, []).append(connection)
        else:
            connection.close()

    async def addresses(self, host: str, port: int) -> list[tuple[Any, ...]]:
        """getaddrinfo's answers (as aiohttp's resolver asks), shared by concurrent probes of one host."""
        key = (host, port)
        found = self.resolved.get(key)
        if found is None or (found.done() and found.exception() is not None):
            loop = asyncio.get_running_loop()
            found = self.resolved[key] = asyncio.ensure_future(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG)
            )
        infos = await asyncio.shield(found)
        return _interleaved([info for info in infos if info[0] != socket.AF_INET6 or len(info[4]) >= 3])


def _interleaved(infos: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Families taken in turn, as aiohappyeyeballs orders them (interleave 1)."""
    by_family: dict[int, list[tuple[Any, ...]]] = {}
    for info in infos:
        by_family.setdefault(info[0], []).append(info)
    lists = list(by_family.values())
    ordered = []
    for n in range(max((len(found) for found in lists), default=0)):
        ordered += [found[n] for found in lists if n < len(found)]
    return ordered


def _collapsed(errors: list[OSError]) -> OSError:
    """aiohappyeyeballs's rule: one error, or all alike, is itself; otherwise one OSError naming them all."""
    first = errors[0]
    if len(errors) == 1 or all(str(error) == str(first) for error in errors):
        return first
    message = "Multiple exceptions: {}".format(", ".join(str(error) for error in errors))
    if all(error.errno == first.errno for error in errors):
        return OSError(first.errno, message)
    return OSError(message)


# What connect() says again once the handshake is done (Linux: 0; BSDs: EISCONN), and while it is still under way.
_CONNECTED = (0, errno.EISCONN)
_UNDER_WAY = (errno.EALREADY, errno.EINPROGRESS, errno.EINTR)


async def _connect_socket(info: tuple[Any, ...]) -> socket.socket:
    """A connected socket, as `loop.sock_connect` makes one, without its trip through the loop when it need not.

    A connect to this machine (loopback, or one of its own addresses) is done by the time the
    non-blocking call returns EINPROGRESS: the kernel ran the handshake with the SYN. A second
    connect() says so (0), and the socket goes on to its transport at once; asyncio would register
    it for writing, wait a turn of the loop, ask SO_ERROR and unregister it (three system calls and
    two turns per connection; a run's first 256 connections are its first requests' delay). A connect
    still under way goes to `sock_connect` as before; one that failed raises asyncio's error for it.
    """
    family, kind, proto, _, address = info
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        try:
            sock.connect(address)
        except (BlockingIOError, InterruptedError):  # under way, as asyncio takes them
            error = sock.connect_ex(address)
            if error in _CONNECTED:
                return sock
            if error not in _UNDER_WAY:
                raise OSError(error, f"Connect call failed {address}") from None  # asyncio's error, word for word
        else:
            return sock
        await asyncio.get_running_loop().sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    return sock


async def _open(pool: Pool, url: WireUrl, tls: ssl.SSLContext | bool | None) -> Connection:
    """A new connection: each address tried (250 ms apart when there are several), then TLS on the one that answered."""
    loop = asyncio.get_running_loop()
    where = f"{url.host}:{url.port}"
    if _is_ip(url.host):
        # The address as `sock_connect` resolves it (IPv6: flow info and scope too), which its errors name.
        family, address = (
            (socket.AF_INET6, (url.host, url.port, 0, 0)) if ":" in url.host else (socket.AF_INET, (url.host, url.port))
        )
        infos: list[tuple[Any, ...]] = [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address)]
    else:
        try:
            infos = await pool.addresses(url.host, url.port)
        except OSError as exc:
            raise ExchangeFailed(describe_connect_error(exc, url.host, where)) from None
    last: ExchangeFailed | None = None
    while infos:
        sock, infos = await _first_to_connect(infos)
        if isinstance(sock, OSError):
            last = ExchangeFailed(describe_connect_error(sock, url.host, where))
            break
        try:
            if tls is None:
                _, connection = await loop.create_connection(lambda: Connection(loop), sock=sock)
            else:
                _, connection = await loop.create_connection(
                    lambda: Connection(loop), sock=sock, ssl=_tls(tls), server_hostname=url.host
                )
        except ssl.CertificateError as exc:
            last = ExchangeFailed(f"TLS certificate verification failed: {exc}")
        except ssl.SSLError as exc:
            shown = "default" if tls is True else tls
            last = ExchangeFailed(f"TLS handshake failed: Cannot connect to host {where} ssl:{shown} [{exc.strerror}]")
        except OSError as exc:
            last = ExchangeFailed(describe_connect_error(exc, url.host, where))
        except BaseException:
            sock.close()
            raise
        else:
            pool.opened += 1
            return connection
        sock.close()
    assert last is not None
    raise last


async def _first_to_connect(infos: list[tuple[Any, ...]]) -> tuple[socket.socket | OSError, list[tuple[Any, ...]]]:
    """The first address to accept a TCP connection and the ones left, or the collapsed error when none did."""
    if len(infos) == 1:
        try:
            return await _connect_socket(infos[0]), []
        except OSError as exc:
            return exc, []
    from asyncio.staggered import staggered_race

    attempts = [partial(_connect_socket, info) for info in infos]
    sock, index, errors = await staggered_race(attempts, 0.25)
    if sock is None or index is None:
        found = [error for error in errors if isinstance(error, OSError)]
        return _collapsed(found or [OSError("connection failed")]), []
    return sock, infos[index + 1 :]


def _is_ip(host: str) -> bool:
    if ":" in host:
        return True
    return bool(host) and host[-1].isdigit() and host.replace(".", "").isdigit() and host.count(".") == 3


@dataclass(slots=True)
class Request:
    """One probe's request: the URL, the method, the target's headers and Basic credentials, the TLS setting."""

    url: WireUrl
    method: str
    headers: list[tuple[str, str]]
    credentials: tuple[str, str] | None
    tls: ssl.SSLContext | bool
    follow_redirects: bool
    max_body: int


def _head(url: WireUrl, method: str, headers: list[tuple[str, str]], auth: str | None) -> bytes:
    """The request's head in aiohttp's order: Host, User-Agent (the target's in its place), the target's headers,
    Accept, Accept-Encoding, Authorization."""
    host = f"Host: {url.host_header}"
    agent = f"User-Agent: {USER_AGENT}"
    rest = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == "host":
            host = f"{name}: {value}"
        elif lowered == "user-agent":
            agent = f"{name}: {value}"
        else:
            rest.append(f"{name}: {value}")
    lines = [f"{method} {url.target} HTTP/1.1", host, agent, *rest]
    given = {name.lower() for name, _ in headers}
    if "accept" not in given:
        lines.append("Accept: */*")
    if "accept-encoding" not in given:
        lines.append(f"Accept-Encoding: {ACCEPT_ENCODING}")
    if auth is not None:
        lines.append(f"Authorization: {auth}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


def _basic(credentials: tuple[str, str]) -> str:
    user, password = credentials
    return "Basic " + b64encode(f"{user}:{password}".encode()).decode("ascii")


async def exchange(pool: Pool, request: Request) -> WireAnswer:
    """The request and its whole answer, redirects followed when asked (aiohttp's rules); ExchangeFailed, ForAiohttp."""
    url = request.url
    method = request.method
    headers = list(request.headers)
    auth = _basic(request.credentials) if request.credentials else None
    retry = True  # aiohttp sends an idempotent request once more when its connection ended first, once per call
    redirects = 0
    while True:
        if auth is not None and any(name.lower() == "authorization" for name, _ in headers):
            raise ExchangeFailed(
                "ValueError: Cannot combine AUTHORIZATION header with AUTH argument or credentials encoded in URL"
            )
        head = _head(url, method, headers, auth)
        while True:
            try:
                answer = await _one(pool, request, url, method, head)
                break
            except Disconnected as exc:
                if not retry:
                    raise ExchangeFailed(str(exc)) from None
                retry = False
        if not (request.follow_redirects and answer.status in (301, 302, 303, 307, 308)):
            return answer
        redirects += 1
        if redirects >= MAX_REDIRECTS:
            raise ExchangeFailed("bad HTTP response: ")  # aiohttp's TooManyRedirects has no message
        if answer.status == 303 and method != "HEAD":
            method = "GET"
        location = answer.header("location") or answer.header("uri")
        if not location:
            return answer
        following = joined(url, location)
        if following is None:
            raise ForAiohttp(f"a redirect to {location!r}")
        if following.origin != url.origin:
            auth = None
            headers = [(name, value) for name, value in headers if name.lower() not in _DROPPED_ACROSS_ORIGINS]
        url = following


async def _one(pool: Pool, request: Request, url: WireUrl, method: str, head: bytes) -> WireAnswer:
    """One request on a pooled or new connection, which goes back to the pool when the answer was read whole."""
    tls = request.tls if url.scheme == "https" else None
    key: PoolKey = (url.scheme, url.host, url.port, tls)
    connection = pool.checkout(key)
    if connection is None:
        connection = await _open(pool, url, tls)
    try:
        assert connection.transport is not None
        connection.transport.write(head)
        answer, whole = await read_answer(connection, method, request.max_body)
    except BaseException:
        connection.close()
        raise
    if whole:
        pool.checkin(key, connection)
    else:
        connection.close()
    return answer
