"""POST each outgoing message, retrying with backoff inside its destination's deadline; record every attempt.

Retried: connection errors, timeouts, 429 and 5xx answers (a `Retry-After` is honoured
when it fits the deadline). Not retried: other 4xx (a bad routing key stays bad). Every
destination works concurrently, and one destination's messages go out a few at a time,
so a run's notifications take at most the longest `deadline` of its destinations.
Nothing here raises: a failure is an attempt with an error, and a message never sent is
recorded as such.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from opsproof.signals.payloads import Outgoing
from opsproof.units import utc_now
from opsproof.version import __version__

FIRST_BACKOFF_S = 0.5
IN_FLIGHT_PER_DESTINATION = 4
ANSWER_EXCERPT = 300  # of a receiver's answer, for the record (redacted like everything else)


def deliver_all(
    outgoing: Sequence[Outgoing], limits: dict[str, tuple[float, float]], redact: Callable[[str], str]
) -> list[dict[str, Any]]:
    """Send everything; one delivery record per message, in order. `limits`: destination -> (timeout, deadline)."""
    if not outgoing:
        return []
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=min(32, IN_FLIGHT_PER_DESTINATION * len(limits))) as pool:
        futures = [
            pool.submit(_deliver, message, *limits[message.destination], started, redact) for message in outgoing
        ]
        return [future.result() for future in futures]


def _deliver(
    message: Outgoing, timeout: float, deadline: float, started: float, redact: Callable[[str], str]
) -> dict[str, Any]:
    attempts: list[dict[str, Any]] = []
    record = describe(message, redact)
    ends = started + deadline
    backoff = FIRST_BACKOFF_S
    data = json.dumps(message.body).encode()
    while True:
        remaining = ends - time.monotonic()
        if remaining <= 0.05:
            if not attempts:
                attempts.append({"at": utc_now(), "error": "not sent: the destination's deadline had passed"})
            break
        attempt, retry_after = _attempt(message, data, min(timeout, remaining), redact)
        attempts.append(attempt)
        if attempt.get("delivered"):
            break
        if not attempt.get("retryable"):
            break
        pause = min(max(backoff, retry_after or 0.0), 30.0)
        if time.monotonic() + pause >= ends - 0.05:
            break
        time.sleep(pause)
        backoff *= 2
    record["attempts"] = attempts
    record["delivered"] = any(a.get("delivered") for a in attempts)
    return record


def describe(message: Outgoing, redact: Callable[[str], str]) -> dict[str, Any]:
    """A message as recorded and shown: where it went and what it said, with secrets replaced by their ${NAME}."""
    return {
        "destination": message.destination,
        "channel": message.channel,
        "event": message.event,
        "url": redact(message.url),
        "checks": message.checks,
        "headers": {name: redact(value) for name, value in message.headers.items()},
        "body": json.loads(redact(json.dumps(message.body))),
    }


def _attempt(
    message: Outgoing, data: bytes, timeout: float, redact: Callable[[str], str]
) -> tuple[dict[str, Any], float | None]:
    request = urllib.request.Request(message.url, data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("User-Agent", f"opsproof/{__version__}")
    for name, value in message.headers.items():
        request.add_header(name, value)
    at, clock = utc_now(), time.monotonic()
    attempt: dict[str, Any] = {"at": at}
    retry_after: float | None = None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            attempt["status"] = int(answer.status)
            attempt["answer"] = redact(answer.read(ANSWER_EXCERPT).decode("utf-8", "replace"))
            attempt["delivered"] = 200 <= answer.status < 300
    except urllib.error.HTTPError as exc:
        attempt["status"] = exc.code
        attempt["answer"] = redact(exc.read(ANSWER_EXCERPT).decode("utf-8", "replace"))
        attempt["retryable"] = exc.code == 429 or exc.code >= 500
        retry_after = _retry_after(exc.headers.get("Retry-After"))
    except (TimeoutError, OSError) as exc:  # URLError is an OSError; a socket timeout is a TimeoutError
        reason = getattr(exc, "reason", exc)
        timed_out = isinstance(reason, TimeoutError) or "timed out" in str(reason)
        attempt["error"] = (
            f"timed out after {timeout:.1f}s" if timed_out else redact(f"{type(reason).__name__}: {reason}")
        )
        attempt["retryable"] = True
    attempt["elapsed_s"] = round(time.monotonic() - clock, 3)
    return attempt, retry_after


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
