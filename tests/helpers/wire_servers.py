"""HTTP servers scripted at the byte level, for comparing the lean HTTP client with aiohttp.

Each path (or a prefix ending in "/") answers with a script: bytes written as they are, pauses (a float, in seconds) and
`CLOSE` (the connection closed there). A script that does not close leaves the connection
open for the client's next request (keep-alive). The servers (plain on 127.0.0.1 and ::1,
TLS with certificates made here) run on one asyncio loop in a background thread and record
each request's head and the connection it came on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import trustme

CLOSE = None
Step = bytes | float | None
Script = Callable[[bytes], list[Step]]


@dataclass
class Seen:
    """One request as the server saw it: the connection's number, the head's bytes."""

    connection: int
    head: bytes

    @property
    def path(self) -> str:
        return self.head.split(b" ", 2)[1].decode("latin-1").split("?", 1)[0]


@dataclass
class Scripted:
    """The servers' addresses and what they saw."""

    routes: dict[str, Script]
    plain: int = 0
    plain6: int = 0
    tls: int = 0  # a certificate for 127.0.0.1 and localhost, from `ca_file`'s CA
    tls_elsewhere: int = 0  # a certificate for elsewhere.example, same CA
    blurter: int = 0  # plain: writes an HTTP answer as soon as a client connects (a TLS client reads garbage)
    ca_file: Path = Path()
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    open: set[asyncio.StreamWriter] = field(default_factory=set)

    def requests_to(self, path: str) -> list[Seen]:
        return [seen for seen in self.seen if seen.path == path]


def answer(status: str = "200 OK", body: bytes = b"", headers: tuple[str, ...] = (), length: bool = True) -> bytes:
    """A whole answer's bytes: the status line, headers (Content-Length unless told not to), the body."""
    lines = [f"HTTP/1.1 {status}", *headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(*pieces: bytes) -> bytes:
    """Pieces as HTTP chunks, the last one empty."""
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


async def _serve(server: Scripted, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    server.open.add(writer)
    server.connections += 1
    number = server.connections
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                return
            seen = Seen(number, head)
            server.seen.append(seen)
            script = server.routes.get(seen.path) or next(
                (
                    script
                    for prefix, script in server.routes.items()
                    if prefix.endswith("/") and seen.path.startswith(prefix)
                ),
                None,
            )
            steps = script(head) if script else [answer("404 Not Found", b"no such script")]
            for step in steps:
                if step is CLOSE:
                    return
                if isinstance(step, float):
                    await asyncio.sleep(step)
                else:
                    writer.write(step)
                    await writer.drain()
    except (ConnectionError, ssl.SSLError):
        return
    finally:
        server.open.discard(writer)
        writer.close()


@contextlib.contextmanager
def scripted_servers(routes: dict[str, Script], folder: Path) -> Iterator[Scripted]:
    """The servers, serving `routes`, for the `with` block."""
    ca = trustme.CA()
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = Scripted(routes=routes, ca_file=ca_file)
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda loop, context: None)  # handshakes the clients refuse are no news here
    thread = threading.Thread(target=loop.run_forever, name="scripted-http", daemon=True)
    thread.start()

    def tls_context(*names: str) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*names).configure_cert(context)
        return context

    async def start() -> list[asyncio.Server]:
        def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> asyncio.Future[None]:
            return asyncio.ensure_future(_serve(server, reader, writer))

        async def blurt(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(answer("400 Bad Request", b"plain HTTP here"))
            await writer.drain()
            writer.close()

        started = [
            await asyncio.start_server(handler, "127.0.0.1", 0),
            await asyncio.start_server(handler, "::1", 0),
            await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls_context("127.0.0.1", "localhost")),
            await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls_context("elsewhere.example")),
            await asyncio.start_server(blurt, "127.0.0.1", 0),
        ]
        ports = [listening.sockets[0].getsockname()[1] for listening in started]
        server.plain, server.plain6, server.tls, server.tls_elsewhere, server.blurter = ports
        return started

    listening = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield server
    finally:

        async def stop() -> None:
            for each in listening:
                each.close()
            for writer in list(server.open):  # connections a client left open (keep-alive, a deadline)
                writer.close()
            await asyncio.sleep(0.05)
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()
            await asyncio.sleep(0.05)

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
