"""Reading an HTTP/1.1 answer for the lean client (`http_wire`): head, framing, body, decoding, errors.

The connection is asyncio's bare Protocol: bytes in, a waiter woken, and the probe's own
coroutine parses them (no reader task, no stream). What it reads it reads as aiohttp does
(llhttp's checks and their words, aiohttp's gzip and deflate, its Content-Type), and each
failure is an `ExchangeFailed` whose message is what `describe_http_error` says of aiohttp's
error for the same answer (tests/kinds/test_http_wire.py compares them).
"""

from __future__ import annotations

import asyncio
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opsproof.errors import OpsproofError

MAX_HEAD_BYTES = 64 * 1024
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_NOT_TOKEN = re.compile(rb"[^!#$%&'*+.^_`|~0-9A-Za-z-]")
# The usual Content-Type values, read without the email parser aiohttp uses (same results).
_SIMPLE_TYPE = re.compile(
    r"\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*"
    r"(?:;\s*[Cc][Hh][Aa][Rr][Ss][Ee][Tt]=([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*)?"
)


class ExchangeFailed(OpsproofError):
    """The exchange failed, in words: what `describe_http_error` says of aiohttp's error for the same thing.

    Both clients raise it (http.py turns aiohttp's errors into it), so the probe has one failure path.
    """


class Disconnected(ExchangeFailed):
    """The connection ended before the answer's head: the request is sent once more, as aiohttp does."""


@dataclass(slots=True)
class WireAnswer:
    status: int
    reason: str
    headers: list[tuple[str, str]]  # lowercased names, values as sent (stripped)
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


def content_type_of(raw: str | None) -> tuple[str, str | None]:
    """aiohttp's `content_type` and `charset`: the mimetype lowercased (`application/octet-stream` when absent)."""
    if raw is None:
        return "application/octet-stream", None
    simple = _SIMPLE_TYPE.fullmatch(raw)
    if simple:
        return simple.group(1).lower(), simple.group(2)
    return _parsed_content_type(raw)


def _parsed_content_type(raw: str) -> tuple[str, str | None]:
    """Anything else through the email parser, as aiohttp's `parse_content_type` does."""
    from email.message import EmailMessage
    from email.parser import HeaderParser
    from email.policy import HTTP

    class _OctetStream(EmailMessage):  # aiohttp's EnsureOctetStream, as it is (no policy argument: the default's)
        def __init__(self) -> None:
            super().__init__()
            self.set_default_type("application/octet-stream")

        def get_content_type(self) -> str:
            value = self.get("content-type", "").lower()
            ctype = value.partition(";")[0].strip()
            return ctype if ctype.count("/") == 1 else self.get_default_type()

    message = HeaderParser(_OctetStream, policy=HTTP).parsestr(f"Content-Type: {raw}")
    params = dict(message.get_params(())[1:])
    return message.get_content_type(), params.get("charset")


class Connection(asyncio.Protocol):
    """Bytes in, a waiter woken: the probe's own coroutine parses them (no reader task, no stream)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # the transport closes itself

    def connection_lost(self, exc: BaseException | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def more(self) -> None:
        """Until more bytes arrive or the connection ends."""
        if not self.eof:
            self.waiter = self.loop.create_future()
            await self.waiter

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.eof = True

    @property
    def reusable(self) -> bool:
        return not self.eof and not self.buffer and self.transport is not None and not self.transport.is_closing()


def _os_error_text(error: BaseException) -> str:
    """aiohttp's ClientOSError of an OSError, in describe_http_error's words."""
    return f"ClientOSError: {OSError(*error.args)}"


def _error_at(description: str, line: bytes, pos: int) -> str:
    """llhttp's error text as aiohttp shows it: the line and a caret under the offending byte."""
    pointer = " " * (len(repr(line[:pos])) - 1) + "^"
    return f"{description}:\n\n  {line!r}\n  {pointer}"


def _status_line(line: bytes) -> tuple[tuple[int, int], int, str]:
    def bad(description: str, pos: int) -> ExchangeFailed:
        return ExchangeFailed(f"bad HTTP response: Bad status line:\n  {_error_at(description, line, pos)}")

    if not line.startswith(b"HTTP/"):
        pos = next((n for n, (a, b) in enumerate(zip(line, b"HTTP/", strict=False)) if a != b), min(len(line), 5))
        raise bad("Expected HTTP/, RTSP/ or ICE/", pos)
    if len(line) < 6 or not line[5:6].isdigit():
        raise bad("Invalid major version", 5)
    if line[6:7] != b".":
        raise bad("Expected dot", 6)
    if not line[7:8].isdigit():
        raise bad("Invalid minor version", 7)
    version = (line[5] - 48, line[7] - 48)
    if version not in ((1, 0), (1, 1)) or line[8:9] != b" ":
        raise bad("Invalid HTTP version" if version not in ((1, 0), (1, 1)) else "Expected space after version", 8)
    code = line[9:12]
    for n in range(3):
        if not code[n : n + 1].isdigit():
            raise bad("Invalid status code", 9 + n)
    if line[12:13] not in (b"", b" "):
        raise bad("Invalid response status", 12)
    return version, int(code), line[13:].decode("utf-8", "surrogateescape")


def _headers(lines: list[bytes]) -> list[tuple[str, str]]:
    found = []
    for line in lines:
        name, colon, value = line.partition(b":")
        bad = _NOT_TOKEN.search(name)
        if bad or not colon or not name:
            raise ExchangeFailed(
                f"bad HTTP response: {_error_at('Invalid header token', line, bad.start() if bad else len(name))}"
            )
        found.append((name.decode("ascii").lower(), value.strip(b" \t").decode("utf-8", "surrogateescape")))
    return found


async def _read_head(connection: Connection) -> tuple[tuple[int, int], int, str, list[tuple[str, str]]]:
    while True:
        buffer = connection.buffer
        end = buffer.find(b"\r\n\r\n")
        bare = buffer.find(b"\n\n")
        if end < 0 or 0 <= bare < end:
            end, size = bare, 2
        else:
            size = 4
        if end >= 0:
            break
        if len(buffer) > MAX_HEAD_BYTES:
            raise ExchangeFailed("bad HTTP response: the answer's head is larger than 64 KiB")
        if connection.eof:
            if isinstance(connection.error, OSError):
                raise Disconnected(_os_error_text(connection.error))
            raise Disconnected("the server closed the connection without answering")
        await connection.more()
    raw = bytes(buffer[:end])
    del buffer[: end + size]
    lines = [line[:-1] if line.endswith(b"\r") else line for line in raw.split(b"\n")]
    version, status, reason = _status_line(lines[0])
    return version, status, reason, _headers(lines[1:])


async def read_answer(connection: Connection, method: str, cap: int) -> tuple[WireAnswer, bool]:
    """The answer, its body decoded and cut at cap + 1 bytes; whether the connection can carry another request."""
    while True:
        version, status, reason, headers = await _read_head(connection)
        if not (100 <= status < 200 and status != 101):
            break  # aiohttp skips informational answers (100 Continue, 103 Early Hints)
    values: dict[str, str] = {}
    for name, value in headers:
        values.setdefault(name, value)
    tokens = {token.strip().lower() for token in values.get("connection", "").split(",")}
    keep_alive = "close" not in tokens if version == (1, 1) else "keep-alive" in tokens
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return WireAnswer(status, reason, headers, b""), keep_alive
    decoder = _decoder(values.get("content-encoding"))
    body = _Body(cap, decoder)
    chunked, length = _framing(headers)
    if chunked:
        whole = await _read_chunked(connection, body)
    elif length is not None:
        whole = await _read_length(connection, body, length)
    else:
        if await _read_to_close(connection, body):
            body.finish()
        return WireAnswer(status, reason, headers, body.data()), False
    if whole:
        body.finish()
    return WireAnswer(status, reason, headers, body.data()), whole and keep_alive


def _framing(headers: list[tuple[str, str]]) -> tuple[bool, int | None]:
    """Chunked, or the Content-Length, as llhttp reads them (with its errors)."""
    encoding_line = length_line = None
    length: int | None = None
    for index, (name, value) in enumerate(headers):
        if name == "transfer-encoding":
            encoding_line = index
        elif name == "content-length":
            line = f"Content-Length: {value}".encode()
            bad = re.search(rb"[^0-9]", value.encode())
            if bad or not value:
                raise ExchangeFailed(
                    "bad HTTP response: "
                    + _error_at("Invalid character in Content-Length", line, 16 + (bad.start() if bad else 0))
                )
            if length is not None and int(value) != length:
                raise ExchangeFailed("bad HTTP response: " + _error_at("Duplicate Content-Length", line, len(line)))
            length, length_line = int(value), index
    if encoding_line is not None and length_line is not None:
        line = f"Content-Length: {headers[length_line][1]}".encode()
        if encoding_line > length_line:
            line = f"Transfer-Encoding: {headers[encoding_line][1]}".encode()
        raise ExchangeFailed(
            "bad HTTP response: " + _error_at("Content-Length can't be present with Transfer-Encoding", line, len(line))
        )
    if encoding_line is not None:
        codings = [coding.strip().lower() for coding in headers[encoding_line][1].split(",")]
        return codings[-1] == "chunked", None
    return False, length


class _Body:
    """Decoded bytes up to cap + 1 (read_body's rule), decoding as aiohttp's DeflateBuffer does."""

    def __init__(self, cap: int, decoder: Callable[[bytes, int], bytes] | None) -> None:
        self.limit = cap + 1
        self.parts: list[bytes] = []
        self.size = 0
        self.received = 0  # bytes as sent (before decoding), for the "not completed" message
        self.decoder = decoder

    @property
    def full(self) -> bool:
        return self.size >= self.limit

    def feed(self, data: bytes) -> None:
        self.received += len(data)
        if self.decoder is not None and data:
            data = self.decoder(data, self.limit - self.size)
        if data:
            self.parts.append(data)
            self.size += len(data)

    def finish(self) -> None:
        if self.decoder is not None and not self.full:
            self.decoder(b"", 0)

    def data(self) -> bytes:
        joined_data = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        return joined_data[: self.limit]


def _decoder(encoding: str | None) -> Callable[[bytes, int], bytes] | None:
    """gzip or deflate as aiohttp decodes them (a deflate body without its zlib header too; gzip members in a row)."""
    if encoding is None or not encoding.isascii():
        return None
    encoding = encoding.lower()
    if encoding == "br":
        raise ExchangeFailed("bad HTTP response: Can not decode content-encoding: brotli (br). Please install `Brotli`")
    if encoding == "zstd":
        raise ExchangeFailed(
            "bad HTTP response: Can not decode content-encoding: zstandard (zstd). Please install `backports.zstd`"
        )
    if encoding not in ("gzip", "deflate"):
        return None
    failed = f"ClientPayloadError: 400, message:\n  Can not decode content-encoding: {encoding}"
    state: dict[str, Any] = {"mode": 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS, "z": None}

    def decode(data: bytes, budget: int) -> bytes:
        if not data:  # the end of the body
            z = state["z"]
            if encoding == "deflate" and z is not None and not z.eof:
                raise ExchangeFailed("ClientPayloadError: 400, message:\n  deflate")
            return b""
        if state["z"] is None:
            if encoding == "deflate" and data[0] & 0xF != 8:
                state["mode"] = -zlib.MAX_WBITS  # raw deflate, as aiohttp accepts it
            state["z"] = zlib.decompressobj(wbits=state["mode"])
        out = []
        try:
            while data and budget > 0:
                z = state["z"]
                if z.eof:
                    z = state["z"] = zlib.decompressobj(wbits=state["mode"])
                piece = z.decompress(z.unconsumed_tail + data if z.unconsumed_tail else data, budget)
                out.append(piece)
                budget -= len(piece)
                data = z.unused_data if z.eof else b""
        except zlib.error:
            raise ExchangeFailed(failed) from None
        return b"".join(out)

    return decode


def _payload_incomplete(connection: Connection, underlying: str) -> ExchangeFailed:
    message = f"ClientPayloadError: Response payload is not completed: {underlying}"
    if connection.error is not None:
        message += f". {connection.error!r}"
    return ExchangeFailed(message)


async def _read_length(connection: Connection, body: _Body, length: int) -> bool:
    left = length
    while left > 0 and not body.full:
        if connection.buffer:
            data = connection.take()
            if len(data) > left:
                connection.buffer += data[left:]
                data = data[:left]
            left -= len(data)
            body.feed(data)
            continue
        if connection.eof:
            raise _payload_incomplete(
                connection,
                "<ContentLengthError: 400, message='Not enough data to satisfy content length header "
                f"(received {length - left} of {length} bytes).'>",
            )
        await connection.more()
    return left == 0


async def _read_to_close(connection: Connection, body: _Body) -> bool:
    """A body without a length: to the connection's end (True), or until the cap (False)."""
    while not body.full:
        if connection.buffer:
            body.feed(connection.take())
            continue
        if connection.eof:
            return True
        await connection.more()
    return False


async def _line(connection: Connection) -> bytes:
    while True:
        end = connection.buffer.find(b"\n")
        if end >= 0:
            line = bytes(connection.buffer[:end])
            del connection.buffer[: end + 1]
            return line[:-1] if line.endswith(b"\r") else line
        if connection.eof:
            raise _payload_incomplete(
                connection, "<TransferEncodingError: 400, message='Not enough data to satisfy transfer length header.'>"
            )
        await connection.more()


async def _read_chunked(connection: Connection, body: _Body) -> bool:
    while not body.full:
        line = await _line(connection)
        size_text = line.split(b";", 1)[0].rstrip(b" \t")
        bad = re.search(rb"[^0-9A-Fa-f]", size_text)
        if bad or not size_text:
            pos = bad.start() if bad else 0
            raise ExchangeFailed(f"bad HTTP response: {_error_at('Invalid character in chunk size', line, pos)}")
        size = int(size_text, 16)
        if size == 0:
            while await _line(connection):  # trailers, up to the empty line
                pass
            return True
        left = size + 2  # the chunk and its CRLF
        while left > 0:
            if not connection.buffer:
                if connection.eof:
                    raise _payload_incomplete(
                        connection,
                        "<TransferEncodingError: 400, message='Not enough data to satisfy transfer length header.'>",
                    )
                await connection.more()
                continue
            data = connection.take()
            if len(data) > left:
                connection.buffer += data[left:]
                data = data[:left]
            data_part = data[: max(0, min(len(data), left - 2))]
            left -= len(data)
            if data_part and not body.full:
                body.feed(data_part)
            if body.full:
                return False
    return False
