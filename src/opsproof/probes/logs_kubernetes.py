"""Pod logs through the Kubernetes API: one pod list, then one log read per pod container.

The pods of the namespace matching the selector are listed (paginated, the selector
applied by the API server), then each running container's log is read once with
`GET .../pods/<name>/log?container=<c>&sinceSeconds=<window>&limitBytes=<cap + 1>`,
streamed into the item's `LineCounter` as it arrives: every pattern is counted in the
same read. A log longer than the cap comes back one byte over it, so the reader knows
it was cut (and drops the line the cap split). The permissions needed are `list` on
pods and `get` on `pods/log`; nothing is written.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from typing import Any

from opsproof.probes.kubernetes import close_connection
from opsproof.probes.kubernetes_client import (
    LISTINGS,
    ConfigProblem,
    Connection,
    Lister,
    ListFailure,
    connect,
    describe_client_error,
)
from opsproof.probes.kubernetes_reduce import Tally
from opsproof.probes.log_reading import ConfigUnusable, LineCounter, LineSplitter, ReadDenied, ReadFailed, Reading
from opsproof.targets.logs import KubernetesLogSource, LogsTarget

READS_IN_FLIGHT = 16  # log reads of one item at once: the API server proxies each to a kubelet
CHUNK = 64 * 1024


def pod_entry(obj: dict[str, Any], _: float) -> dict[str, Any]:
    """A listed pod, reduced to what reading its logs needs."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    statuses = {
        str(s.get("name")): s for s in (obj.get("status") or {}).get("containerStatuses") or [] if isinstance(s, dict)
    }
    containers = [str(c.get("name")) for c in spec.get("containers") or [] if isinstance(c, dict)]
    # A container that never started has no log (the API answers 400): it is skipped, not an error.
    started = [c for c in containers if c in statuses and "waiting" not in (statuses[c].get("state") or {})]
    return {"name": str(meta.get("name")), "containers": containers, "started": started}


async def read_pod_logs(target: LogsTarget, timeout: float, counter: LineCounter, reading: Reading) -> None:
    settings = target.kubernetes
    assert settings is not None
    try:
        connection = await connect(settings, redactor=reading.redactor)
    except ConfigProblem as problem:
        raise ConfigUnusable(str(problem)) from None
    started = time.perf_counter()
    lister = Lister(connection, 500, time.monotonic() + timeout, timeout, started)
    try:
        pods = Tally(pod_entry, time.time())
        try:
            await lister.list_all(LISTINGS["pods"], settings.namespace, settings.selector, pods)
        except ListFailure as failure:
            reading.calls = lister.calls
            _raise_for(failure)
        reading.calls = lister.calls
        streams = _streams(settings, pods.kept, reading)
        if not pods.kept:
            selected = f"matches {settings.selector}" if settings.selector else "runs"
            reading.empty_reason = f"no pod {selected} in namespace {settings.namespace}"
            return
        if not streams and not reading.stream_errors:
            reading.empty_reason = (
                f"no container of the {len(pods.kept)} matching pods in namespace {settings.namespace} has started"
            )
            return
        limit = asyncio.Semaphore(READS_IN_FLIGHT)

        async def one(pod: str, container: str) -> None:
            async with limit:
                reading.calls += 1
                await _read_one(connection, target, settings, pod, container, counter, reading)

        await asyncio.gather(*(one(pod, container) for pod, container in streams))
    finally:
        await close_connection(connection)


def _streams(settings: KubernetesLogSource, pods: list[dict[str, Any]], reading: Reading) -> list[tuple[str, str]]:
    """(pod, container) pairs to read: the one container asked for, else every started one."""
    streams = []
    for pod in pods:
        if settings.container is not None:
            if settings.container not in pod["containers"]:
                reading.stream_errors[pod["name"]] = f"has no container {settings.container}"
                continue
            wanted = [settings.container] if settings.container in pod["started"] else []
        else:
            wanted = pod["started"]
        streams += [(pod["name"], container) for container in wanted]
    return streams


def _raise_for(failure: ListFailure) -> None:
    if failure.kind in ("unauthorized", "forbidden"):
        raise ReadDenied(failure.message)
    if failure.kind == "timed_out":
        raise TimeoutError
    raise ReadFailed(failure.message)


async def _read_one(
    connection: Connection,
    target: LogsTarget,
    settings: KubernetesLogSource,
    pod: str,
    container: str,
    counter: LineCounter,
    reading: Reading,
) -> None:
    import aiohttp

    path = f"/api/v1/namespaces/{settings.namespace}/pods/{pod}/log"
    query = [
        ("container", container),
        ("sinceSeconds", max(1, int(target.within))),
        ("limitBytes", target.limit_bytes + 1),
    ]
    stream = f"{pod}/{container}"
    try:
        response = await connection.client.call_api(
            path,
            "GET",
            query_params=query,
            header_params={"Accept": "text/plain"},
            auth_settings=["BearerToken"],
            _preload_content=False,
        )
    except (aiohttp.ClientError, OSError, ssl.SSLError) as exc:
        reading.stream_errors[stream] = connection.scrub(describe_client_error(exc, connection.server))
        return
    try:
        if response.status != 200:
            body = await response.content.read(4096)
            _refused(response.status, body, stream, settings, connection, reading)
            return
        reading.streams += 1
        splitter = LineSplitter()
        taken = 0
        while chunk := await response.content.read(CHUNK):
            room = target.limit_bytes - taken
            taken += len(chunk)
            counter.feed(splitter.add(chunk[: max(room, 0)]), stream)
            if taken > target.limit_bytes:
                break
        cut = taken > target.limit_bytes
        counter.feed(splitter.finish(cut=cut), stream)
        if cut:
            reading.cut.append(stream)
    finally:
        response.release()


def _refused(
    status: int, body: bytes, stream: str, settings: KubernetesLogSource, connection: Connection, reading: Reading
) -> None:
    """A log read the API server refused: 401/403 deny the whole item, anything else is this stream's."""
    try:
        message = str(json.loads(body).get("message") or "")
    except (ValueError, AttributeError):
        message = body[:200].decode("utf-8", "replace").strip()
    message = connection.scrub(message)
    if status == 401:
        raise ReadDenied("the API server rejected the credentials (HTTP 401 Unauthorized)")
    if status == 403:
        raise ReadDenied(
            f"cannot read pod logs in namespace {settings.namespace}: {message or 'HTTP 403 Forbidden'} "
            "(the checks need `get` on pods/log)"
        )
    reading.stream_errors[stream] = f"HTTP {status}: {message or 'no message'}"
