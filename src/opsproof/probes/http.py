"""HTTP health endpoints: one read-only request per target, all targets concurrently.

The requests go through the lean HTTP/1.1 client in `http_wire` (asyncio's Protocol and
Transport; ~half the probe process's CPU per request of aiohttp's, and no aiohttp import),
except for a target it does not take (see `wire_request` and `http_wire`'s note): that one
goes through aiohttp, as every target did before. Both give the same facts, through
`probe_one` (tests/kinds/test_http_wire.py runs both against scripted servers).
`metrics`, `prometheus` and `logs` (Loki) keep aiohttp: `open_session`, `read_body` and
`describe_http_error` are theirs too.

aiohttp, not httpx, for those: measured here, one aiohttp session fetched 1,000 endpoints
answering in 100 ms in ~0.4 s where one httpx AsyncClient took ~23 s.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import Field

from opsproof.outcomes import reaches
from opsproof.probes import Facts, ProbeContext, ProbeKind, describe_connect_error, each_as_done
from opsproof.probes.http_answer import ExchangeFailed, content_type_of
from opsproof.probes.http_urls import parse_url
from opsproof.probes.http_wire import ForAiohttp, Pool, Request
from opsproof.probes.http_wire import exchange as wire_exchange
from opsproof.targets.http import HttpTarget

CHUNK_BYTES = 64 * 1024
EXCERPT_CHARS = 300
JSON_SHOWN_CHARS = 2000


class HttpFacts(Facts):
    url: str
    status: int | None = None
    reason: str | None = None
    latency_s: float | None = Field(None, description="request sent to whole body read (the faster of two samples)")
    latency_samples_ms: list[float] | None = Field(
        None, description="both samples, when the first crossed a latency limit and was measured again"
    )
    content_type: str | None = None
    location: str | None = None
    body_bytes: int = 0
    body_truncated: bool = Field(False, description="the body was larger than max_body: only that much was read")
    max_body: int = Field(0, description="the item's cap on the body read (bytes)")
    body_text: str = Field("", description="the whole body (up to max_body), for regex checks")
    json_body: Any = None
    json_error: str | None = None

    def observed(self) -> dict[str, Any]:
        shown = super().observed()
        shown.pop("body_text", None)
        shown.pop("json_body", None)
        if self.body_text:
            shown["body_excerpt"] = self.body_text[:EXCERPT_CHARS]
        if self.json_body is not None:
            # The body's size stands in for the JSON's: no second serialisation per target.
            small = self.body_bytes <= JSON_SHOWN_CHARS
            shown["json"] = self.json_body if small else json.dumps(self.json_body)[:JSON_SHOWN_CHARS] + "..."
        if self.latency_s is not None:
            shown["latency_ms"] = round(self.latency_s * 1000, 1)
            del shown["latency_s"]
        return shown


class _Verified(Protocol):
    @property
    def verify_tls(self) -> bool: ...
    @property
    def ca_file(self) -> Path | None: ...


def ssl_context_for(
    target: _Verified, cache: dict[tuple[str | None, bool], ssl.SSLContext | bool]
) -> ssl.SSLContext | bool:
    """`True` (the default verifying context), `False`, or one with `ca_file` added.

    `True` is aiohttp's context (made when aiohttp is imported) or the lean client's
    (`http_wire.verifying_context`, made once, at the first https connection that needs it).
    A context of our own costs ~25 ms (the system trust store is read again): only a
    `ca_file` needs one.
    """
    if not target.verify_tls:
        return False
    if target.ca_file is None:
        return True
    key = (str(target.ca_file), True)
    if key not in cache:
        context = ssl.create_default_context()
        context.load_verify_locations(cafile=str(target.ca_file))
        cache[key] = context
    return cache[key]


def describe_http_error(exc: BaseException) -> str:
    """An aiohttp client error in words (the prometheus probe shares it)."""
    import aiohttp

    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate verification failed: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS handshake failed: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return describe_connect_error(exc.os_error, exc.host, f"{exc.host}:{exc.port}")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without answering"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"bad HTTP response: {exc.message}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def read_body(response: Any, cap: int) -> bytes:
    """The whole body, or its first `cap + 1` bytes when it is larger (so the caller knows it is).

    `content.read(n)` returns what has arrived so far, not n bytes: a body sent in two
    packets would be judged from its first (the prometheus probe shares this).
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(CHUNK_BYTES):
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            break
    return b"".join(chunks)[: cap + 1]


@dataclass(slots=True)
class Answer:
    """What the probe keeps of an answer, whichever client fetched it."""

    status: int
    reason: str | None
    content_type: str
    charset: str | None
    location: str | None
    body: bytes  # up to max_body + 1 bytes


# One request and its answer; ExchangeFailed (in words) or TimeoutError otherwise.
Exchange = Callable[[HttpTarget], Awaitable[Answer]]


def via_aiohttp(session: Any, contexts: dict[Any, Any]) -> Exchange:
    """The exchange through an aiohttp session: targets the lean client leaves, and the tests' reference."""

    async def exchange(target: HttpTarget) -> Answer:
        import aiohttp

        credentials = target.credentials
        try:
            async with session.request(
                target.method,
                target.request_url,
                # UTF-8 (RFC 7617), not aiohttp's latin-1 default: a non-ASCII password must not crash the request.
                auth=aiohttp.BasicAuth(*credentials, encoding="utf-8") if credentials else None,
                headers=target.headers,
                ssl=ssl_context_for(target, contexts),
                allow_redirects=target.follow_redirects,
            ) as response:
                body = await read_body(response, target.max_body)
                location = response.headers.get("Location")
                return Answer(response.status, response.reason, response.content_type, response.charset, location, body)
        except TimeoutError:
            raise
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise ExchangeFailed(describe_http_error(exc)) from None

    return exchange


# Header names and values the lean client writes as given; anything else (a newline, a space in a name) is aiohttp's.
_PLAIN_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_PLAIN_HEADER_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")


def wire_request(target: HttpTarget, contexts: dict[Any, Any]) -> Request | None:
    """The target as the lean client's request, or None: it needs aiohttp (a URL or header outside http_wire's set)."""
    # request_url re-parses the URL to drop `user:password@`; without one the URL is what aiohttp is given.
    url = parse_url(target.url if "@" not in target.url else target.request_url)
    if url is None:
        return None
    headers = list(target.headers.items())
    if not all(_PLAIN_HEADER_NAME.fullmatch(name) and _PLAIN_HEADER_VALUE.fullmatch(value) for name, value in headers):
        return None
    tls = ssl_context_for(target, contexts)  # every hop of a redirect chain, as aiohttp applies `ssl=`
    return Request(url, target.method, headers, target.credentials, tls, target.follow_redirects, target.max_body)


class Clients:
    """A run's two clients: the lean one for each target it takes, aiohttp (opened when needed) for the rest."""

    def __init__(self, targets: Sequence[HttpTarget], lean: bool = True) -> None:
        self.lean = lean
        self.contexts: dict[Any, Any] = {}
        self.pool = Pool()
        self.session: Any = None
        # Each target's request, made once (the second latency sample reuses it); None: aiohttp's.
        self.requests = {target.name: wire_request(target, self.contexts) if lean else None for target in targets}
        if None in self.requests.values():
            # aiohttp imported now, before any request is in flight: imported mid-run (~0.1 s of CPU), it
            # would stall the event loop and add that to the latency of every answer then arriving.
            self.session = open_session()

    async def exchange(self, target: HttpTarget) -> Answer:
        request = self.requests.get(target.name)
        if request is not None:
            try:
                answer = await wire_exchange(self.pool, request)
            except ForAiohttp:
                pass
            else:
                content_type, charset = content_type_of(answer.header("content-type"))
                return Answer(
                    answer.status, answer.reason, content_type, charset, answer.header("location"), answer.body
                )
        if self.session is None:
            self.session = open_session()
        return await via_aiohttp(self.session, self.contexts)(target)

    async def close(self) -> None:
        self.pool.close()
        if self.session is not None:
            await self.session.close()


async def _timed(exchange: Exchange, target: HttpTarget) -> tuple[Answer, float]:
    """One request, connect to last body byte: the answer and the latency."""
    started = time.perf_counter()
    answer = await exchange(target)
    return answer, time.perf_counter() - started


def _lowest_limit(target: HttpTarget) -> float | None:
    latency = target.expect.latency
    limits = [limit for limit in ((latency.warn, latency.fail) if latency else ()) if limit is not None]
    return min(limits) if limits else None


async def _confirm(exchange: Exchange, target: HttpTarget, first: float, timeout: float) -> list[float]:
    """A second sample when the first crossed a latency limit: one slow answer is noise, two are a finding.

    The first request pays for DNS, the TCP and TLS handshakes and, on a busy machine,
    for whatever else ran at that moment; the second reuses the connection. The check
    judges the faster of the two, and the record shows both. A second request that fails
    or takes longer than the timeout leaves the first sample alone.
    """
    try:
        async with asyncio.timeout(timeout):
            _, second = await _timed(exchange, target)
    except (TimeoutError, ExchangeFailed):
        return [first]
    return [first, second]


async def probe_one(exchange: Exchange, target: HttpTarget, ctx: ProbeContext) -> HttpFacts:
    """One target's facts through `exchange` (the lean client or aiohttp: the differential test runs both)."""
    timeout = ctx.profile.timeout_of(target)
    url_shown = ctx.redactor.redact(target.url)
    async with ctx.limit:
        started = time.perf_counter()
        try:
            # The whole exchange, connect to last body byte, lives inside one deadline:
            # a black hole that accepts and never answers costs `timeout`, no more.
            async with asyncio.timeout(timeout):
                answer, latency = await _timed(exchange, target)
        except TimeoutError:
            elapsed = time.perf_counter() - started
            return HttpFacts(
                target=target.name,
                url=url_shown,
                reached=False,
                timed_out=True,
                failure=f"timed out after {elapsed:.2f}s (timeout {timeout:g}s)",
                elapsed_s=elapsed,
            )
        except ExchangeFailed as exc:
            return HttpFacts(
                target=target.name,
                url=url_shown,
                reached=False,
                failure=ctx.redactor.redact(str(exc)),
                elapsed_s=time.perf_counter() - started,
            )
        limit = _lowest_limit(target)
        samples = [latency]
        if limit is not None and reaches(latency, limit):
            samples = await _confirm(exchange, target, latency, timeout)
    body = answer.body
    truncated = len(body) > target.max_body
    body = body[: target.max_body]
    text = body.decode(answer.charset or "utf-8", errors="replace")
    json_body: Any = None
    json_error: str | None = None
    if not truncated and text.strip():
        try:
            json_body = json.loads(text)
        except ValueError as exc:
            json_error = f"not JSON: {exc}"
    return HttpFacts(
        target=target.name,
        url=url_shown,
        reached=True,
        status=answer.status,
        reason=answer.reason,
        latency_s=min(samples),
        latency_samples_ms=[round(sample * 1000, 1) for sample in samples] if len(samples) > 1 else None,
        content_type=answer.content_type,
        location=ctx.redactor.redact(answer.location or "") or None,
        body_bytes=len(body),
        body_truncated=truncated,
        max_body=target.max_body,
        body_text=ctx.redactor.redact(text),
        json_body=json_body,
        json_error=json_error,
        elapsed_s=time.perf_counter() - started,
    )


async def gather_http(targets: Sequence[HttpTarget], ctx: ProbeContext, lean: bool = True) -> AsyncIterator[HttpFacts]:
    """Probe every target through one run's clients (`lean=False`: all through aiohttp); yield facts as they come."""
    clients = Clients(targets, lean=lean)
    try:
        async for facts in each_as_done(probe_one(clients.exchange, t, ctx) for t in targets):
            yield facts
    finally:
        await clients.close()


def open_session() -> Any:
    """The aiohttp session every target of a kind shares (an `async with` context; `metrics` uses it too)."""
    import aiohttp

    # limit=0: the run's semaphore is the bound; per-host limits would serialise a fleet
    # behind one load balancer.
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        trust_env=False,
        # Each probe stands alone: a cookie one endpoint sets is never sent to another.
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": "opsproof/0.1 (read-only health check)"},
    )


PROBE: ProbeKind[HttpTarget, HttpFacts] = ProbeKind(
    name="http",
    facts=HttpFacts,
    gather=gather_http,
    # The lean client's modules only: aiohttp is imported when a target needs it (see wire_request).
    imports=("opsproof.probes.http_wire",),
    times_targets=True,  # latency thresholds
)
