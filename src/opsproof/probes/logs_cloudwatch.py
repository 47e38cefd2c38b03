"""AWS CloudWatch Logs: `FilterLogEvents` over the item's log group for the window, page by page.

boto3 is synchronous, so the pages are read in a worker thread; each call's socket
timeouts are the item's timeout and botocore retries nothing (a black hole costs the
timeout once), and the thread stops between pages once the deadline or `limit_bytes`
is reached. The client refuses every operation but `FilterLogEvents` before it is sent.
Credentials come from boto3's chain (environment, shared config, instance role).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from opsproof.backup.store import StoreError, read_only_client, s3_errors
from opsproof.probes.log_reading import LineCounter, ReadDenied, ReadFailed, Reading
from opsproof.targets.logs import CloudWatchSource, LogsTarget

READ_OPERATIONS = frozenset({"FilterLogEvents"})
PAGE_EVENTS = 10000


_CLIENTS: dict[tuple[str | None, str | None, float], Any] = {}


def client_for(settings: CloudWatchSource, timeout: float) -> Any:
    """The item's client, made once per endpoint, region and timeout (botocore loads its service model
    then): `probes.logs` makes it before the item's deadline starts."""
    key = (settings.endpoint_url, settings.region, timeout)
    if key not in _CLIENTS:
        _CLIENTS[key] = read_only_client(
            "logs", settings.endpoint_url, settings.region, timeout, READ_OPERATIONS, "a log group"
        )
    return _CLIENTS[key]


def _read(target: LogsTarget, timeout: float, deadline: float, counter: LineCounter, reading: Reading) -> None:
    """Every page of the window (blocking: the worker thread's work)."""
    settings = target.cloudwatch
    assert settings is not None
    now_ms = int(time.time() * 1000)
    request: dict[str, Any] = {
        "logGroupName": settings.log_group,
        "startTime": now_ms - int(target.within * 1000),
        "endTime": now_ms,
        "limit": PAGE_EVENTS,
    }
    if settings.stream_prefix:
        request["logStreamNamePrefix"] = settings.stream_prefix
    if settings.filter_pattern:
        request["filterPattern"] = settings.filter_pattern
    streams: set[str] = set()
    client = client_for(settings, timeout)
    while True:
        if time.monotonic() >= deadline:
            raise TimeoutError
        reading.calls += 1
        page = client.filter_log_events(**request)
        for event in page.get("events") or []:
            stream = str(event.get("logStreamName") or "")
            streams.add(stream)
            message = str(event.get("message") or "")
            if counter.bytes + len(message.encode()) + 1 > target.limit_bytes:
                reading.cut.append(settings.log_group)
                reading.streams = len(streams)
                return
            counter.feed(message.splitlines() or [""], stream)
        reading.streams = len(streams)
        token = page.get("nextToken")
        if not token:
            return
        request["nextToken"] = token


async def read_cloudwatch(target: LogsTarget, timeout: float, counter: LineCounter, reading: Reading) -> None:
    settings = target.cloudwatch
    assert settings is not None
    where = f"CloudWatch Logs group {settings.log_group}"
    deadline = time.monotonic() + timeout
    try:
        with s3_errors(where):
            # The item's asyncio deadline ends the wait; the thread ends at its next page or
            # at its socket timeout, which is the same deadline.
            await asyncio.to_thread(_read, target, timeout, deadline, counter, reading)
    except StoreError as error:
        if error.timed_out:
            raise TimeoutError from None
        if error.denied:
            raise ReadDenied(str(error)) from None
        raise ReadFailed(str(error).replace("ResourceNotFoundException: ", "")) from None
