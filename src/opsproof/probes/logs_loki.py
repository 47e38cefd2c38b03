"""Grafana Loki: the item's LogQL query over `GET /loki/api/v1/query_range`, oldest lines first.

One query for the window (`start` = now - within, `end` = now, `direction=forward`),
paged by `limit` (5,000 lines a page, Loki's default `max_entries_limit_per_query`): the
next page starts one nanosecond after the last line seen. Reading stops at `max_lines`
or `limit_bytes` (said cut). Every pattern is counted on the lines as each page arrives.
"""

from __future__ import annotations

import json
import ssl
import time
from typing import Any

from opsproof.probes.http import describe_http_error
from opsproof.probes.log_reading import ConfigUnusable, LineCounter, ReadDenied, ReadFailed, Reading
from opsproof.redaction import Redactor
from opsproof.targets.logs import LogsTarget, LokiSource

PAGE_LINES = 5000


async def read_loki(target: LogsTarget, timeout: float, counter: LineCounter, reading: Reading) -> None:
    import aiohttp

    settings = target.loki
    assert settings is not None
    headers = {"Accept": "application/json", "User-Agent": "opsproof (read-only checks)", **settings.headers}
    if settings.tenant:
        headers["X-Scope-OrgID"] = settings.tenant
    end_ns = time.time_ns()
    start_ns = end_ns - int(target.within * 1e9)
    url = settings.url.rstrip("/") + "/loki/api/v1/query_range"
    streams: set[str] = set()
    timeout_settings = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=timeout_settings, cookie_jar=aiohttp.DummyCookieJar()) as session:
        while True:
            wanted = min(PAGE_LINES, settings.max_lines - counter.lines)
            params = {
                "query": settings.query,
                "start": str(start_ns),
                "end": str(end_ns),
                "limit": str(wanted),
                "direction": "forward",
            }
            reading.calls += 1
            page = await _page(session, url, params, headers, settings, reading.redactor)
            entries = _entries(page)
            for stream, _, _ in entries:
                streams.add(stream)
            reading.streams = len(streams)
            room = target.limit_bytes - counter.bytes
            taken = []
            for _, _, line in entries:
                room -= len(line.encode()) + 1
                if room < 0:
                    break
                taken.append(line)
            counter.feed(taken)
            if len(taken) < len(entries) or (len(entries) == wanted and counter.lines >= settings.max_lines):
                reading.cut.append(settings.query)
                return
            if len(entries) < wanted:
                return
            start_ns = max(int(ts) for _, ts, _ in entries) + 1


def _entries(page: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(stream labels, timestamp ns, line) of one answer, oldest first across its streams."""
    found = []
    for result in page.get("result") or []:
        labels = json.dumps(result.get("stream") or {}, sort_keys=True)
        for value in result.get("values") or []:
            if isinstance(value, list) and len(value) >= 2:
                found.append((labels, str(value[0]), str(value[1])))
    found.sort(key=lambda entry: int(entry[1]))
    return found


async def _page(
    session: Any, url: str, params: dict[str, str], headers: dict[str, str], settings: LokiSource, redactor: Redactor
) -> dict[str, Any]:
    import aiohttp

    context: ssl.SSLContext | bool = True
    if settings.ca_file is not None:
        context = ssl.create_default_context(cafile=str(settings.ca_file))
    try:
        async with session.get(url, params=params, headers=headers, ssl=context) as response:
            body = await response.read()
            status = response.status
    except TimeoutError:
        raise  # aiohttp's timeouts are ClientErrors too: the deadline, not a failed request
    except (aiohttp.ClientError, OSError) as exc:
        raise ReadFailed(f"cannot query {settings.url}: {redactor.redact(describe_http_error(exc))}") from None
    # Redact, then cut: a secret the server echoes must not survive in part at the cut.
    text = redactor.redact(body[:65536].decode("utf-8", "replace").strip())[:300]
    if status in (401, 403):
        raise ReadDenied(f"Loki refused the query (HTTP {status}): {text or 'no message'}")
    if status == 400:
        raise ConfigUnusable(f"Loki refused the query {settings.query!r} (HTTP 400): {text}")
    if status != 200:
        raise ReadFailed(f"Loki answered HTTP {status}: {text or 'no message'}")
    try:
        data = json.loads(body)
    except ValueError:
        raise ReadFailed(f"{settings.url} answered HTTP 200 with a body that is not JSON: not Loki?") from None
    inner = data.get("data") if isinstance(data, dict) else None
    if not isinstance(inner, dict) or inner.get("resultType") != "streams":
        raise ReadFailed(f"{settings.url} did not answer with log streams (is the query a log query, not a metric?)")
    return inner
