"""Prometheus servers: a few GET requests to the HTTP API per item, every item concurrently.

Per item, within one deadline (the item's `timeout`), concurrently:

- `GET /api/v1/status/buildinfo` (the version, for the record; its failure costs nothing),
- `GET /api/v1/alerts` (firing and pending alerts) unless `alerts: false`,
- `GET /api/v1/query` of `max_over_time(ALERTS{alertstate="firing"}[<over>])` where `alerts.over` is set,
- `GET /api/v1/targets?state=active` unless `targets: false` (with `targets.source: up`, an instant
  query of `up` instead),
- per KPI, `GET /api/v1/query` (now) or, with `over:`, `GET /api/v1/query_range` (now - over .. now,
  every `step`), with `timeout=<the item's timeout>` so the server gives up when the probe does.

At most four queries of one item are in flight at once (Prometheus evaluates 20 at a time
by default, and the checks must not be what loads it). Only GET: nothing is written.
Every KPI of an item is evaluated at the same instant, so they describe one moment.

Range results are reduced here to each series' worst point (the largest value, or the
smallest with `lower_is_worse`) and the series sorted worst first; values stay the strings
Prometheus sent ("0.25", "NaN", "+Inf"), so the facts are plain JSON.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from opsproof.errors import OpsproofError
from opsproof.probes import Facts, ProbeContext, ProbeKind, each_as_done, utc_iso
from opsproof.probes.http import describe_http_error, read_body
from opsproof.probes.samples import badness, number
from opsproof.redaction import Redactor
from opsproof.targets.prometheus import Kpi, PrometheusTarget

# Enough for the alerts and targets of a large server; a runaway answer must not eat the run's memory.
MAX_BODY_BYTES = 64 * 1024 * 1024
QUERIES_IN_FLIGHT = 4
KEPT_SERIES = 100  # worst first; series_count says how many there were
KEPT_ALERTS = 1000
KEPT_TARGETS = 200
TEXT_CHARS = 300


class PrometheusFacts(Facts):
    url: str
    version: str | None = None
    denied: str | None = Field(None, description="the server refused our credentials (HTTP 401/403): checks cannot run")
    # Each answer: {"ok": true, ...} or {"ok": false, "outcome": "failed"|"error", "error": "...", ...}
    alerts: dict[str, Any] | None = Field(None, description="firing alerts (labels, since) and the pending count")
    alert_history: dict[str, Any] | None = Field(None, description="label sets of alerts that fired in alerts.over")
    targets: dict[str, Any] | None = Field(None, description="active targets: counts by job and those not up")
    kpis: dict[str, dict[str, Any]] = Field(default_factory=dict, description="KPI name -> its series, worst first")
    evaluated_at: str | None = Field(None, description="the instant every KPI was evaluated at")

    def observed(self) -> dict[str, Any]:
        # What every prometheus check's record carries; each check adds what it judged.
        shown: dict[str, Any] = {"url": self.url, "reached": self.reached}
        for name in ("timed_out", "failure", "denied", "version"):
            value = getattr(self, name)
            if value:
                shown[name] = value
        shown["elapsed_s"] = round(self.elapsed_s, 4)
        return shown


class ApiError(OpsproofError):
    """An answer that is not a usable API result; `outcome` says whose fault it is."""

    def __init__(self, message: str, outcome: str, status: int | None = None, error_type: str | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome  # "failed": the server's state; "error": the profile's or the grant's
        self.status = status
        self.error_type = error_type


class Denied(ApiError):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message, "error", status)


def _failure(exc: BaseException, redactor: Redactor) -> dict[str, Any]:
    if isinstance(exc, ApiError):
        found: dict[str, Any] = {"ok": False, "outcome": exc.outcome, "error": redactor.redact(str(exc))}
        if exc.status is not None:
            found["status"] = exc.status
        if exc.error_type:
            found["error_type"] = exc.error_type
        return found
    return {"ok": False, "outcome": "failed", "error": redactor.redact(describe_http_error(exc)), "unreached": True}


def _excerpt(text: str, redactor: Redactor) -> str:
    # Redact, then cut: a cut first would leave most of a secret that the redactor no longer recognises.
    return redactor.excerpt(" ".join(redactor.redact(text).split()), TEXT_CHARS)


class Client:
    """GET requests to one item's API, with its credentials, TLS settings and query timeout."""

    def __init__(self, session: Any, target: PrometheusTarget, timeout: float, redactor: Redactor) -> None:
        import aiohttp

        self.session = session
        self.redactor = redactor
        self.target = target
        self.timeout = timeout
        self.headers = {"Accept": "application/json", **target.headers}
        if target.bearer_token is not None:
            self.headers["Authorization"] = f"Bearer {target.bearer_token}"
        self.auth = (
            aiohttp.BasicAuth(target.basic_auth.username, target.basic_auth.password, encoding="utf-8")
            if target.basic_auth is not None
            else None
        )
        self.ssl: ssl.SSLContext | bool = _ssl_context(target)

    async def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """The `data` and `warnings` of one successful API answer; ApiError (or a client error) otherwise."""
        async with self.session.get(
            self.target.api(path), params=params, headers=self.headers, auth=self.auth, ssl=self.ssl
        ) as response:
            body = await read_body(response, MAX_BODY_BYTES)
            status = response.status
            content_type = response.content_type
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(f"/api/v1/{path} answered more than {MAX_BODY_BYTES // 2**20} MiB", "failed", status)
        text = body.decode("utf-8", errors="replace")
        if status in (401, 403):
            raise Denied(
                f"{self._refusal(status)}: HTTP {status} from /api/v1/{path}: {_excerpt(text, self.redactor)}", status
            )
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if not isinstance(document, dict) or document.get("status") not in ("success", "error"):
            raise _not_api(path, status, content_type, text, self.redactor)
        if document["status"] == "error":
            raise _api_error(path, status, document, self.redactor)
        return {"data": document.get("data"), "warnings": [str(w) for w in document.get("warnings") or []]}

    def _refusal(self, status: int) -> str:
        if status == 403:
            return "access denied to these credentials"
        sent = self.auth is not None or "Authorization" in self.headers
        return "the server refused the credentials" if sent else "authentication required (no credentials configured)"


def _not_api(path: str, status: int, content_type: str, text: str, redactor: Redactor) -> ApiError:
    if status == 404:
        return ApiError(
            f"HTTP 404 for /api/v1/{path}: not a Prometheus API at this URL (is `url` the server's base URL?)",
            "error",
            status,
        )
    if status >= 500:
        return ApiError(f"HTTP {status} from /api/v1/{path}: {_excerpt(text, redactor)}", "failed", status)
    return ApiError(
        f"HTTP {status} for /api/v1/{path} is not a Prometheus API answer ({content_type}): {_excerpt(text, redactor)}",
        "error",
        status,
    )


# Prometheus's errorType values: whose fault each one is. A query the server cannot parse
# or evaluate must be fixed in the profile (error); a server too busy to answer is its state.
_ERROR_OUTCOMES = {
    "bad_data": "error",
    "execution": "error",
    "not_found": "error",
    "not_acceptable": "error",
    "timeout": "failed",
    "canceled": "failed",
    "internal": "failed",
    "unavailable": "failed",
}


def _api_error(path: str, status: int, document: dict[str, Any], redactor: Redactor) -> ApiError:
    error_type = str(document.get("errorType") or "unknown")
    message = _excerpt(str(document.get("error") or "no error message"), redactor)
    outcome = _ERROR_OUTCOMES.get(error_type, "failed" if status >= 500 else "error")
    return ApiError(f"{message} ({error_type}, HTTP {status})", outcome, status, error_type)


def _ssl_context(target: PrometheusTarget) -> ssl.SSLContext | bool:
    if not target.url.startswith("https://"):
        return True  # aiohttp's default for http://: unused
    if not target.verify_tls:
        return False
    context = ssl.create_default_context()
    if target.ca_file is not None:
        context.load_verify_locations(cafile=str(target.ca_file))
    return context


# -- shaping answers into facts ----------------------------------------------------------


def _labels_without(labels: dict[str, Any], *names: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in sorted(labels.items()) if k not in names}


def alerts_facts(answer: dict[str, Any], redactor: Redactor) -> dict[str, Any]:
    """Firing alerts (name, labels, since, summary) and how many are pending."""
    alerts = (answer["data"] or {}).get("alerts") or []
    by_state: dict[str, list[dict[str, Any]]] = {"firing": [], "pending": []}
    for alert in alerts:
        if alert.get("state") not in by_state:
            continue
        labels = alert.get("labels") or {}
        annotations = alert.get("annotations") or {}
        summary = annotations.get("summary") or annotations.get("description") or ""
        by_state[alert["state"]].append(
            {
                "name": str(labels.get("alertname", "")),
                "labels": _labels_without(labels, "alertname"),
                "since": alert.get("activeAt"),
                "summary": _excerpt(str(summary), redactor) if summary else None,
            }
        )
    for found in by_state.values():
        found.sort(key=lambda a: (a["name"], sorted(a["labels"].items())))
    return {
        "ok": True,
        "firing_count": len(by_state["firing"]),
        "firing": by_state["firing"][:KEPT_ALERTS],
        "pending_count": len(by_state["pending"]),
        "pending": by_state["pending"][:KEPT_ALERTS],
        "warnings": answer["warnings"],
    }


def history_facts(answer: dict[str, Any]) -> dict[str, Any]:
    """Label sets of the alerts that fired in the window (the ALERTS series)."""
    result = (answer["data"] or {}).get("result") or []
    fired = [
        {
            "name": str(series["metric"].get("alertname", "")),
            "labels": _labels_without(series["metric"], "alertname", "alertstate", "__name__"),
        }
        for series in result
    ]
    return {"ok": True, "fired_count": len(fired), "fired": fired[:KEPT_ALERTS], "warnings": answer["warnings"]}


def targets_facts(answer: dict[str, Any], redactor: Redactor) -> dict[str, Any]:
    """Active targets: per job how many are up, down or unknown; the ones not up, named."""
    seen = []
    for target in (answer["data"] or {}).get("activeTargets") or []:
        labels = target.get("labels") or {}
        job = str(labels.get("job") or target.get("scrapePool") or "")
        seen.append((job, str(labels.get("instance", "")), str(target.get("health") or "unknown"), target))

    def scrape(target: dict[str, Any]) -> dict[str, Any]:
        return {
            "last_error": redactor.redact(str(target.get("lastError") or "")) or None,
            "last_scrape": target.get("lastScrape"),
            "scrape_url": redactor.redact(str(target.get("scrapeUrl") or "")),
        }

    return _health_facts(seen, scrape, answer["warnings"])


def up_targets_facts(answer: dict[str, Any]) -> dict[str, Any]:
    """The same counts from the `up` series (1: the last scrape worked, 0: it failed): no scrape errors, no URLs."""
    if (answer["data"] or {}).get("resultType") != "vector":
        raise ApiError("the query `up` did not return an instant vector", "failed")
    seen = []
    for series in (answer["data"] or {}).get("result") or []:
        labels = series.get("metric") or {}
        value = number(series["value"][1])
        health = "up" if value == 1 else "down" if value == 0 else "unknown"
        seen.append((str(labels.get("job") or ""), str(labels.get("instance", "")), health, series))
    return _health_facts(seen, lambda _: {"last_error": None}, answer["warnings"], source="up")


def _health_facts(
    seen: list[tuple[str, str, str, Any]],
    details: Callable[[Any], dict[str, Any]],
    warnings: Any,
    **extra: Any,
) -> dict[str, Any]:
    """Per job how many of `seen` (job, instance, health, what it was read from) are up, down or unknown;
    the ones not up named, with `details` of what each was read from (made for those only)."""
    jobs: dict[str, dict[str, int]] = {}
    not_up = []
    for job, instance, health, found in seen:
        counts = jobs.setdefault(job, {"up": 0, "down": 0, "unknown": 0})
        counts[health if health in counts else "unknown"] += 1
        if health != "up":
            not_up.append({"job": job, "instance": instance, "health": health, **details(found)})
    not_up.sort(key=lambda t: (t["job"], t["instance"]))
    return {
        "ok": True,
        **extra,
        "active_count": len(seen),
        "jobs": dict(sorted(jobs.items())),
        "not_up_count": len(not_up),
        "not_up": not_up[:KEPT_TARGETS],
        "warnings": warnings,
    }


def _worst_point(points: list[list[Any]], lower_is_worse: bool) -> tuple[Any, str] | None:
    best: tuple[Any, str] | None = None
    for stamp, value in points:
        if math.isnan(number(value)):
            continue
        if best is None or badness(value, lower_is_worse) < badness(best[1], lower_is_worse):
            best = (stamp, value)
    return best


def kpi_facts(answer: dict[str, Any], kpi: Kpi) -> dict[str, Any]:
    """Every series of the result as {labels, value, at}, worst first; a range reduced to its worst point."""
    data = answer["data"] or {}
    kind = data.get("resultType")
    result = data.get("result")
    series: list[dict[str, Any]] = []
    if kind == "scalar" and isinstance(result, list):
        series.append({"labels": {}, "value": str(result[1]), "at": utc_iso(float(result[0]))})
    elif kind == "vector" and kpi.over is None:
        for entry in result or []:
            stamp, value = entry["value"]
            series.append({"labels": _labels_without(entry["metric"]), "value": str(value), "at": utc_iso(stamp)})
    elif kind == "matrix" and kpi.over is not None:
        for entry in result or []:
            worst = _worst_point(entry.get("values") or [], kpi.lower_is_worse)
            last = (entry.get("values") or [[None, "NaN"]])[-1]
            point = worst or (last[0], "NaN")
            series.append(
                {
                    "labels": _labels_without(entry["metric"]),
                    "value": str(point[1]),
                    "at": utc_iso(float(point[0])) if point[0] is not None else None,
                    "last": str(last[1]),
                }
            )
    elif kind == "matrix":
        raise ApiError(
            "the query returns a range vector (a selector such as x[5m]): wrap it in a function "
            "(max_over_time, rate...) or use `over:` for the worst value over a window",
            "error",
        )
    else:
        raise ApiError(f"the query returns a {kind}, not a number: a KPI needs an instant vector or a scalar", "error")
    series.sort(key=lambda s: badness(s["value"], kpi.lower_is_worse))
    nan_series = sum(1 for s in series if math.isnan(number(s["value"])))
    return {
        "ok": True,
        "result_type": kind,
        "series_count": len(series),
        "nan_series": nan_series,
        "series": series[:KEPT_SERIES],
        "warnings": answer["warnings"],
    }


# -- one item ----------------------------------------------------------------------------


def _prom_time(moment: float) -> str:
    return f"{moment:.3f}"


def _prom_duration(seconds: float) -> str:
    # PromQL durations take whole units: milliseconds keep any window exact.
    return f"{round(seconds * 1000)}ms"


class ItemProbe:
    """The requests of one item, each recording its answer; a deadline may stop the rest."""

    def __init__(self, client: Client, target: PrometheusTarget, now: float, redactor: Redactor) -> None:
        self.client = client
        self.redactor = redactor
        self.target = target
        self.now = now
        self.answers: dict[str, dict[str, Any]] = {}
        self.queries = asyncio.Semaphore(QUERIES_IN_FLIGHT)

    def requests(self) -> dict[str, Callable[[], Awaitable[dict[str, Any]]]]:
        """Answer key -> the coroutine making it: "buildinfo", "alerts", "history", "targets", "kpi:<name>"."""
        target = self.target
        wanted: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {"buildinfo": self._buildinfo}
        if target.alerts is not None:
            wanted["alerts"] = self._alerts
            if target.alerts.over is not None:
                wanted["history"] = self._history
        if target.targets is not None:
            wanted["targets"] = self._targets
        for kpi in target.kpis:
            wanted[f"kpi:{kpi.name}"] = self._kpi_request(kpi)
        return wanted

    async def run(self) -> None:
        async def one(key: str, make: Callable[[], Awaitable[dict[str, Any]]]) -> None:
            try:
                self.answers[key] = await make()
            except Exception as exc:  # one request's failure is that answer's, in words; never the run's
                self.answers[key] = _failure(exc, self.redactor)

        await asyncio.gather(*(one(key, make) for key, make in self.requests().items()))

    async def _buildinfo(self) -> dict[str, Any]:
        answer = await self.client.get("status/buildinfo")
        return {"ok": True, "version": str((answer["data"] or {}).get("version") or "") or None}

    async def _alerts(self) -> dict[str, Any]:
        return alerts_facts(await self.client.get("alerts"), self.redactor)

    async def _history(self) -> dict[str, Any]:
        assert self.target.alerts is not None and self.target.alerts.over is not None
        query = f'max_over_time(ALERTS{{alertstate="firing"}}[{_prom_duration(self.target.alerts.over)}])'
        async with self.queries:
            answer = await self.client.get("query", self._instant(query))
        return history_facts(answer)

    async def _targets(self) -> dict[str, Any]:
        assert self.target.targets is not None
        if self.target.targets.source == "up":
            async with self.queries:
                return up_targets_facts(await self.client.get("query", self._instant("up")))
        return targets_facts(await self.client.get("targets", {"state": "active"}), self.redactor)

    def _instant(self, query: str) -> dict[str, str]:
        return {"query": query, "time": _prom_time(self.now), "timeout": _prom_duration(self.client.timeout)}

    def _kpi_request(self, kpi: Kpi) -> Callable[[], Awaitable[dict[str, Any]]]:
        async def request() -> dict[str, Any]:
            if kpi.over is None:
                path, params = "query", self._instant(kpi.query)
            else:
                step = kpi.range_step
                path = "query_range"
                params = {
                    "query": kpi.query,
                    "start": _prom_time(self.now - kpi.over),
                    "end": _prom_time(self.now),
                    "step": _prom_duration(step),
                    "timeout": _prom_duration(self.client.timeout),
                }
            async with self.queries:
                answer = await self.client.get(path, params)
            found = kpi_facts(answer, kpi)
            if kpi.over is not None:
                found |= {"window_s": kpi.over, "step_s": kpi.range_step, "start": utc_iso(self.now - kpi.over)}
            return found

        return request

    def timed_out(self, timeout: float) -> None:
        """The deadline passed: whatever has not answered did not answer in time."""
        for key in self.requests():
            self.answers.setdefault(
                key,
                {
                    "ok": False,
                    "outcome": "failed",
                    "error": f"no answer within the timeout {timeout:g}s",
                    "timed_out": True,
                },
            )


def _answered(answers: dict[str, dict[str, Any]]) -> bool:
    """Some request got an HTTP answer: the server is reached, whatever it said."""
    return any(a.get("ok") or "status" in a for a in answers.values())


def _denied(answers: dict[str, dict[str, Any]]) -> str | None:
    for key in ("alerts", "targets", *sorted(answers)):
        answer = answers.get(key, {})
        if answer.get("status") in (401, 403) and answer.get("outcome") == "error":
            return str(answer["error"])
    return None


async def _probe_one(session: Any, target: PrometheusTarget, ctx: ProbeContext) -> PrometheusFacts:
    timeout = ctx.profile.timeout_of(target)
    base: dict[str, Any] = {"target": target.name, "url": target.url}
    async with ctx.limit:
        started = time.perf_counter()
        probe = ItemProbe(
            Client(session, target, timeout, ctx.redactor), target, datetime.now(UTC).timestamp(), ctx.redactor
        )
        timed_out = False
        try:
            async with asyncio.timeout(timeout):
                await probe.run()
        except TimeoutError:
            timed_out = True
            probe.timed_out(timeout)
        elapsed = time.perf_counter() - started
    answers = probe.answers
    if not _answered(answers):
        reasons = [a["error"] for a in answers.values() if a.get("unreached")]
        failure = f"timed out after {elapsed:.2f}s (timeout {timeout:g}s)" if timed_out or not reasons else reasons[0]
        return PrometheusFacts(**base, reached=False, timed_out=timed_out, failure=failure, elapsed_s=elapsed)
    buildinfo = answers.pop("buildinfo", {})
    return PrometheusFacts(
        **base,
        reached=True,
        version=buildinfo.get("version"),
        denied=_denied(answers),
        alerts=answers.get("alerts"),
        alert_history=answers.get("history"),
        targets=answers.get("targets"),
        kpis={key.removeprefix("kpi:"): answer for key, answer in answers.items() if key.startswith("kpi:")},
        evaluated_at=utc_iso(probe.now),
        elapsed_s=elapsed,
    )


async def gather_prometheus(targets: Sequence[PrometheusTarget], ctx: ProbeContext) -> AsyncIterator[PrometheusFacts]:
    """Probe every item through one session; yield each one's facts as it completes."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        trust_env=False,
        headers={"User-Agent": "opsproof/0.1 (read-only monitoring check)"},
    ) as session:
        async for facts in each_as_done(_probe_one(session, t, ctx) for t in targets):
            yield facts


_ISO_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(text: str | None) -> datetime | None:
    """Prometheus's RFC 3339 times (nanoseconds, Z) as an aware datetime; None when absent or unreadable."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(_ISO_FRACTION.sub(r"\1", text).replace("Z", "+00:00"))
    except ValueError:
        return None


PROBE: ProbeKind[PrometheusTarget, PrometheusFacts] = ProbeKind(
    name="prometheus",
    facts=PrometheusFacts,
    gather=gather_prometheus,
    imports=("aiohttp",),
)
