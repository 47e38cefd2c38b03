"""Kubernetes clusters: a handful of paginated list calls per item, read-only, all at once.

Per item, one list call per resource type the item's checks need (pods, deployments,
statefulsets, daemonsets, horizontalpodautoscalers, nodes, services, endpointslices,
persistentvolumeclaims, cronjobs, cert-manager certificates, TLS secrets, Warning
events; namespaces when the item names some, to tell a typo from an empty namespace),
each paginated with `limit`/`continue`, never one call per object. All of an item's
calls run concurrently in one event loop under the item's timeout; every request is a
GET. The item's label selector and the field selectors (`type=kubernetes.io/tls`,
`type=Warning`) are applied by the API server.

Scope: without `namespaces`, cluster-wide lists. With up to `PER_NAMESPACE_MAX`
namespaces, one list per namespace (what a namespaced RoleBinding allows); with more,
one cluster-wide list filtered here, falling back to per-namespace lists when the
cluster-wide one is forbidden.

The client is the official one's asyncio variant (`kubernetes.aio`, aiohttp underneath):
it reads the kubeconfig (exec plugins, client certificates, tokens) or the in-cluster
service account, and makes the requests. Measured against the synchronous client in
threads (5,000 pods): the same list time, a little less CPU, ~0.25 s more to import; it
was chosen because a deadline cancels its requests, where a thread outlives the item's
timeout. Responses are read as raw JSON (`_preload_content=False`): the client's typed
models cost ~0.7 ms per pod to build (3.5 s for 5,000 pods, measured) and refuse objects
they do not expect. Each page is reduced as it arrives (`Tally`) to counts and the
objects worth a look, so a 5,000-pod list never sits in memory whole and travels to the
checks as a few kilobytes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import ssl
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field

from opsproof.probes import Facts, ProbeContext, ProbeKind, describe_connect_error, each_as_done
from opsproof.redaction import redact
from opsproof.targets.kubernetes import KubernetesTarget, read_kubeconfig

PER_NAMESPACE_MAX = 5
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# Waiting reasons of a container that is on its way up, not in trouble.
STARTING_REASONS = frozenset({"ContainerCreating", "PodInitializing"})
PRESSURE_CONDITIONS = ("MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")
MAX_EVENT_GROUPS = 50


@dataclass(frozen=True)
class Listing:
    """One resource type as the probe lists it."""

    key: str  # the name facts and checks use
    prefix: str  # /api/v1 or /apis/<group>/<version>
    plural: str
    namespaced: bool = True
    selectable: bool = False  # the item's label selector applies
    field_selector: str | None = None

    @property
    def shown(self) -> str:
        """kubectl's name with the version: `deployments.apps/v1`, `certificates.cert-manager.io/v1`."""
        group_version = self.prefix.removeprefix("/apis/").removeprefix("/api/")
        group, _, version = group_version.rpartition("/")
        return f"{self.plural}.{group}/{version}" if group else f"{self.plural}/{version}"

    def path(self, namespace: str | None) -> str:
        where = f"/namespaces/{namespace}" if namespace is not None else ""
        return f"{self.prefix}{where}/{self.plural}"


LISTINGS: dict[str, Listing] = {
    listing.key: listing
    for listing in (
        Listing("namespaces", "/api/v1", "namespaces", namespaced=False),
        Listing("pods", "/api/v1", "pods", selectable=True),
        Listing("deployments", "/apis/apps/v1", "deployments", selectable=True),
        Listing("statefulsets", "/apis/apps/v1", "statefulsets", selectable=True),
        Listing("daemonsets", "/apis/apps/v1", "daemonsets", selectable=True),
        Listing("horizontalpodautoscalers", "/apis/autoscaling/v2", "horizontalpodautoscalers", selectable=True),
        Listing("nodes", "/api/v1", "nodes", namespaced=False),
        Listing("services", "/api/v1", "services", selectable=True),
        Listing("endpointslices", "/apis/discovery.k8s.io/v1", "endpointslices"),
        Listing("persistentvolumeclaims", "/api/v1", "persistentvolumeclaims", selectable=True),
        Listing("cronjobs", "/apis/batch/v1", "cronjobs"),
        Listing("certificates", "/apis/cert-manager.io/v1", "certificates", selectable=True),
        Listing("secrets", "/api/v1", "secrets", selectable=True, field_selector="type=kubernetes.io/tls"),
        Listing("events", "/api/v1", "events", field_selector="type=Warning"),
    )
}
WORKLOAD_KINDS = {"deployments": "Deployment", "statefulsets": "StatefulSet", "daemonsets": "DaemonSet"}


def listings_for(target: KubernetesTarget) -> list[str]:
    """The resource types this item's checks read (an aspect turned off costs no call)."""
    keys = ["pods"]
    if target.namespaces:
        keys.append("namespaces")
    if target.workloads is not None:
        keys += list(WORKLOAD_KINDS)
    if target.hpa is not None:
        keys.append("horizontalpodautoscalers")
    if target.nodes is not None:
        keys.append("nodes")
    if target.services:
        keys += ["services", "endpointslices"]
    if target.pvcs:
        keys.append("persistentvolumeclaims")
    if target.cronjobs:
        keys.append("cronjobs")
    if target.certificates is not None:
        keys.append("certificates")
    if target.tls_secrets is not None:
        keys.append("secrets")
    if target.events is not None:
        keys.append("events")
    return keys


class KubernetesFacts(Facts):
    server: str | None = Field(None, description="the API server's URL")
    context: str | None = Field(None, description="the kubeconfig context used; None in-cluster")
    scope: str = Field("all namespaces", description="which namespaces the lists covered")
    config_error: str | None = Field(None, description="the kubeconfig or service account could not be used")
    denied: str | None = Field(None, description="the API server refused the credentials (401)")
    calls: int = Field(0, description="API requests made (every one a GET)")
    listed: dict[str, int] = Field(default_factory=dict, description="objects listed per resource type")
    errors: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="resource type -> {kind: forbidden|absent|timed_out|unreachable|failed, message, resource}",
    )
    missing_namespaces: list[str] = Field(default_factory=list, description="namespaces asked for that do not exist")
    pods: dict[str, Any] = Field(default_factory=dict)
    workloads: dict[str, Any] = Field(default_factory=dict)
    hpas: dict[str, Any] = Field(default_factory=dict)
    nodes: dict[str, Any] = Field(default_factory=dict)
    services: dict[str, Any] = Field(default_factory=dict)
    pvcs: dict[str, Any] = Field(default_factory=dict)
    cronjobs: list[dict[str, Any]] = Field(default_factory=list)
    certificates: list[dict[str, Any]] = Field(default_factory=list)
    tls_secrets: list[dict[str, Any]] = Field(default_factory=list)
    events: dict[str, Any] = Field(default_factory=dict)

    def observed(self) -> dict[str, Any]:
        # What every kubernetes record carries; each check adds what it judged.
        shown: dict[str, Any] = {"server": self.server, "reached": self.reached}
        for name in ("context", "timed_out", "failure", "config_error", "denied"):
            value = getattr(self, name)
            if value:
                shown[name] = value
        shown["scope"] = self.scope
        shown["calls"] = self.calls
        shown["elapsed_s"] = round(self.elapsed_s, 4)
        return shown


# -- connecting ------------------------------------------------------------------------


class ConfigProblem(Exception):
    """The kubeconfig, context or service account cannot be used: the checks cannot run."""


@dataclass
class Connection:
    """An API client for one item and the secrets its errors must never show."""

    client: Any  # kubernetes.aio.client.ApiClient
    server: str
    context: str | None
    secrets: list[str] = field(default_factory=list)

    def scrub(self, text: str) -> str:
        text = redact(text)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


async def connect(
    target: KubernetesTarget,
    *,
    service_account: Path = SERVICE_ACCOUNT_DIR,
    environ: Mapping[str, str] | None = None,
) -> Connection:
    """An aio ApiClient configured from the item: kubeconfig and context, or in-cluster; raise ConfigProblem."""
    from kubernetes.aio.client import ApiClient, Configuration
    from kubernetes.aio.config import kube_config
    from kubernetes.aio.config.incluster_config import InClusterConfigLoader

    configuration = Configuration()
    context: str | None = None
    # The loader writes CA data and client keys to files for OpenSSL: they go to a private
    # folder (0700) that is gone once the client holds them in its SSLContext (the probe
    # process ends with os._exit, so the client's own atexit cleanup would never run).
    temp_dir = tempfile.TemporaryDirectory(prefix="opsproof-kube-")
    try:
        try:
            if target.in_cluster:
                loader = InClusterConfigLoader(
                    token_filename=str(service_account / "token"),
                    cert_filename=str(service_account / "ca.crt"),
                    environ=os.environ if environ is None else environ,
                )
                loader.load_and_set(configuration)
            else:
                # kubectl's rule (the first file naming a current-context wins), not the client's (the last).
                context = target.context or read_kubeconfig(target.kubeconfig_files).current_context
                await kube_config.load_kube_config(
                    config_file=target.kubeconfig,
                    context=context,
                    client_configuration=configuration,
                    persist_config=False,  # a refreshed token is never written back: checks never write
                    temp_file_path=temp_dir.name,
                )
        except Exception as exc:
            # The loaders raise ConfigException, but also whatever a malformed file or a failing
            # auth provider makes them hit (KeyError, yaml errors, google-auth's own): any of
            # them means this item's credentials cannot be used, and only this item's checks say so.
            raise ConfigProblem(_config_message(exc, target)) from None
        if target.token is not None:
            # The profile's token replaces whatever the kubeconfig user had.
            configuration.api_key = {"BearerToken": f"Bearer {target.token}"}
            configuration.refresh_api_key_hook = None
            configuration.cert_file = configuration.key_file = None
        configuration.connection_pool_maxsize = 32
        try:
            # The SSLContext is built here, from the temp files the loader wrote (CA data, client
            # certificate and key); no await since the loader wrote them, so no other item's
            # load can interleave, and the files are removed right after (finally, below).
            client = ApiClient(configuration)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigProblem(f"cannot use the TLS settings of the kubeconfig: {exc}") from None
    finally:
        kube_config._cleanup_temp_files()  # the loader's own index of its temp files, emptied with them
        temp_dir.cleanup()
    client.user_agent = "opsproof (read-only checks)"
    return Connection(client=client, server=configuration.host, context=context, secrets=_secrets_of(configuration))


def _secrets_of(configuration: Any) -> list[str]:
    found = []
    for value in configuration.api_key.values():
        if isinstance(value, str) and value:
            found.append(value)
            scheme, _, credential = value.partition(" ")
            if credential and scheme.lower() in ("bearer", "basic"):
                found.append(credential)
    if configuration.password:
        found.append(configuration.password)
    return sorted(found, key=len, reverse=True)


def _config_message(exc: BaseException, target: KubernetesTarget) -> str:
    text = str(exc).strip() or type(exc).__name__
    if target.in_cluster:
        return f"cannot use the in-cluster service account: {text}"
    where = f" (context {target.context})" if target.context else ""
    return redact(f"cannot use kubeconfig {target.kubeconfig}{where}: {text}")


# -- listing ---------------------------------------------------------------------------


class ListFailure(Exception):
    """A list call that got no usable answer; `kind` says how the checks treat it."""

    def __init__(self, kind: str, message: str, *, answered: bool, resource: str = "") -> None:
        super().__init__(message)
        self.kind = kind  # unauthorized | forbidden | absent | timed_out | unreachable | failed
        self.message = message
        self.answered = answered  # the API server answered at all (HTTP)
        self.resource = resource  # which list: pods/v1, certificates.cert-manager.io/v1


@dataclass
class Lister:
    """Paginated list calls of one item, under one deadline, counted."""

    connection: Connection
    page_size: int
    deadline: float  # time.monotonic() by which everything must be done
    timeout: float
    started: float
    calls: int = 0

    async def list_all(
        self,
        listing: Listing,
        namespace: str | None,
        label_selector: str | None,
        into: Tally,
        *,
        only: set[str] | None = None,
    ) -> None:
        """Every page of one list, reduced into `into` as it arrives (`only`: these namespaces); raise ListFailure."""
        token: str | None = None
        path = listing.path(namespace)
        while True:
            query: list[tuple[str, Any]] = [("limit", self.page_size)]
            if label_selector:
                query.append(("labelSelector", label_selector))
            if listing.field_selector:
                query.append(("fieldSelector", listing.field_selector))
            if token:
                query.append(("continue", token))
            page = await self._get(path, query, listing)
            objects = [obj for obj in page.get("items") or [] if isinstance(obj, dict)]
            into.add(objects if only is None else [obj for obj in objects if _meta(obj).get("namespace") in only])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return

    async def _get(self, path: str, query: list[tuple[str, Any]], listing: Listing) -> dict[str, Any]:
        import aiohttp

        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise self.timed_out(listing)
        self.calls += 1
        try:
            response = await self.connection.client.call_api(
                path,
                "GET",
                query_params=query,
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=aiohttp.ClientTimeout(total=remaining),
            )
            try:
                body = await response.read()
            finally:
                response.release()
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise self.timed_out(listing) from None
        except (aiohttp.ClientError, OSError, ssl.SSLError) as exc:
            described = self.connection.scrub(describe_client_error(exc, self.connection.server))
            raise ListFailure("unreachable", described, answered=False, resource=listing.shown) from None
        if response.status != 200:
            raise _status_failure(response.status, body, listing, self.connection)
        try:
            data = json.loads(body)
        except ValueError:
            raise ListFailure(
                "failed",
                f"GET {path} answered HTTP 200 with a body that is not JSON: not a Kubernetes API server?",
                answered=True,
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("items", []), list):
            raise ListFailure("failed", f"GET {path} answered something other than a list", answered=True)
        return data

    def timed_out(self, listing: Listing) -> ListFailure:
        elapsed = time.perf_counter() - self.started
        message = f"timed out after {elapsed:.2f}s (timeout {self.timeout:g}s)"
        return ListFailure("timed_out", message, answered=False, resource=listing.shown)


def _status_failure(status: int, body: bytes, listing: Listing, connection: Connection) -> ListFailure:
    """An HTTP error in words: the API server's `Status` message where it sent one."""
    message = ""
    try:
        data = json.loads(body)
        if isinstance(data, dict):
            message = str(data.get("message") or "")
    except ValueError:
        # Scrubbed whole, then cut: a cut first would leave most of a secret the redactor no longer recognises.
        message = body.decode("utf-8", "replace").strip()
    message = connection.scrub(message)
    message = message if len(message) <= 200 else message[:200] + "..."
    if status == 401:
        detail = f": {message}" if message and message != "Unauthorized" else ""
        return ListFailure(
            "unauthorized", f"the API server rejected the credentials (HTTP 401 Unauthorized){detail}", answered=True
        )
    if status == 403:
        return ListFailure(
            "forbidden", f"cannot list {listing.shown}: {message or 'HTTP 403 Forbidden'}", answered=True
        )
    if status == 404:
        crd = " (is cert-manager installed?)" if listing.key == "certificates" else ""
        return ListFailure("absent", f"the API server does not serve {listing.shown}{crd}", answered=True)
    if status == 410:
        return ListFailure(
            "failed",
            f"listing {listing.shown}: the continue token expired (HTTP 410); the list changed too fast",
            answered=True,
        )
    return ListFailure("failed", f"listing {listing.shown}: HTTP {status}: {message or 'no message'}", answered=True)


def describe_client_error(exc: BaseException, server: str) -> str:
    """A failed request in words: cannot resolve, cannot connect, TLS, closed."""
    import aiohttp

    parts = urlsplit(server)
    host = parts.hostname or server
    address = parts.netloc or server
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cause = exc.certificate_error
        reason = getattr(cause, "verify_message", None) or getattr(cause, "reason", None) or str(cause)
        return f"TLS certificate verification failed for {address}: {reason}"
    if isinstance(exc, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError):
        return f"TLS handshake with {address} failed: {getattr(exc, 'os_error', exc)}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return describe_connect_error(exc.os_error, host, address)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return f"{address} closed the connection without answering"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error with {address}: {exc.reason or exc}"
    if isinstance(exc, OSError):
        return describe_connect_error(exc, host, address)
    return f"request to {address} failed: {type(exc).__name__}: {exc}"


# -- one item ----------------------------------------------------------------------------


@dataclass
class Gathered:
    """What the lists of one item gave: each resource type reduced (a Tally), or why not."""

    tallies: dict[str, Tally] = field(default_factory=dict)
    failures: dict[str, ListFailure] = field(default_factory=dict)


async def gather_lists(target: KubernetesTarget, lister: Lister, keys: Sequence[str], now: float) -> Gathered:
    """Every list of the item, concurrently; those unfinished at the deadline are timed out."""
    tallies = {key: tally_for(key, target, now) for key in keys}
    tasks = {key: asyncio.ensure_future(_list_scoped(target, lister, LISTINGS[key], tallies[key])) for key in keys}
    gathered = Gathered()
    remaining = max(0.0, lister.deadline - time.monotonic())
    _, pending = await asyncio.wait(tasks.values(), timeout=remaining)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    for key, task in tasks.items():
        if task in pending:
            gathered.failures[key] = lister.timed_out(LISTINGS[key])
            continue
        error = task.exception()
        if isinstance(error, ListFailure):
            gathered.failures[key] = error
        elif error is not None:
            raise error  # a bug: loud, not a finding
        else:
            gathered.tallies[key] = tallies[key]
    return gathered


async def _list_scoped(target: KubernetesTarget, lister: Lister, listing: Listing, into: Tally) -> None:
    selector = target.selector if listing.selectable else None
    if listing.key == "nodes" and target.nodes is not None:
        selector = target.nodes.selector
    namespaces = target.namespaces
    if not listing.namespaced or namespaces is None:
        await lister.list_all(listing, None, selector, into)
        return
    if len(namespaces) > PER_NAMESPACE_MAX:
        try:
            await lister.list_all(listing, None, selector, into, only=set(namespaces))
            return
        except ListFailure as failure:
            # Forbidden cluster-wide (a RoleBinding per namespace): one list per namespace is
            # what such a grant allows. A 403 comes with the first page, so nothing was counted.
            if failure.kind != "forbidden":
                raise
    await asyncio.gather(*(lister.list_all(listing, ns, selector, into) for ns in namespaces))


async def probe_one(
    target: KubernetesTarget,
    ctx: ProbeContext,
    *,
    service_account: Path = SERVICE_ACCOUNT_DIR,
    environ: Mapping[str, str] | None = None,
) -> KubernetesFacts:
    timeout = ctx.profile.timeout_of(target)
    scope = "namespaces " + ", ".join(target.namespaces) if target.namespaces else "all namespaces"
    base: dict[str, Any] = {"target": target.name, "scope": scope}
    async with ctx.limit:
        started = time.perf_counter()
        deadline = time.monotonic() + timeout
        try:
            async with asyncio.timeout(timeout):
                connection = await connect(target, service_account=service_account, environ=environ)
        except ConfigProblem as problem:
            return KubernetesFacts(
                **base, reached=False, config_error=str(problem), elapsed_s=time.perf_counter() - started
            )
        except TimeoutError:
            elapsed = time.perf_counter() - started
            failure = f"timed out after {elapsed:.2f}s (timeout {timeout:g}s) reading the credentials (exec plugin?)"
            return KubernetesFacts(**base, reached=False, timed_out=True, failure=failure, elapsed_s=elapsed)
        base |= {"server": connection.server, "context": connection.context}
        lister = Lister(connection, target.page_size, deadline, timeout, started)
        try:
            gathered = await gather_lists(target, lister, listings_for(target), time.time())
        finally:
            await _close(connection)
        elapsed = time.perf_counter() - started
    return facts_from(target, gathered, base | {"calls": lister.calls, "elapsed_s": elapsed})


async def _close(connection: Connection) -> None:
    try:
        async with asyncio.timeout(1):
            await connection.client.close()
    except Exception:  # the facts are taken; a failed close changes none of them
        pass


def facts_from(target: KubernetesTarget, gathered: Gathered, base: dict[str, Any]) -> KubernetesFacts:
    """KubernetesFacts from the reduced lists: reached or not, refused or not, and each aspect's summary."""
    failures = gathered.failures
    answered = bool(gathered.tallies) or any(f.answered for f in failures.values())
    if not answered:
        first = next(iter(failures.values()))
        return KubernetesFacts(**base, reached=False, timed_out=first.kind == "timed_out", failure=first.message)
    unauthorized = [f for f in failures.values() if f.kind == "unauthorized"]
    if unauthorized:
        return KubernetesFacts(**base, reached=True, denied=unauthorized[0].message)
    tallies = gathered.tallies
    found: dict[str, Any] = {
        "listed": {key: tally.total for key, tally in tallies.items()},
        "errors": {
            key: {"kind": f.kind, "message": f.message, "resource": f.resource or LISTINGS[key].shown}
            for key, f in failures.items()
        },
    }
    if "namespaces" in tallies:
        existing = {entry["name"] for entry in tallies["namespaces"].kept}
        found["missing_namespaces"] = [ns for ns in target.namespaces or [] if ns not in existing]
    if "pods" in tallies:
        pods = tallies["pods"]
        found["pods"] = {"total": pods.total, "by_phase": dict(sorted(pods.by.items())), "notable": pods.kept}
    if all(key in tallies for key in WORKLOAD_KINDS):
        found["workloads"] = {
            "totals": {kind: tallies[key].total for key, kind in WORKLOAD_KINDS.items()},
            "notable": [entry for key in WORKLOAD_KINDS for entry in tallies[key].kept],
        }
    for key, name in (("horizontalpodautoscalers", "hpas"), ("nodes", "nodes"), ("persistentvolumeclaims", "pvcs")):
        if key in tallies:
            found[name] = {"total": tallies[key].total, "notable": tallies[key].kept}
    if "services" in tallies and "endpointslices" in tallies:
        found["services"] = services_without_endpoints(tallies["services"], tallies["endpointslices"])
    for key, name in (("cronjobs", "cronjobs"), ("certificates", "certificates"), ("secrets", "tls_secrets")):
        if key in tallies:
            found[name] = tallies[key].kept
    if "events" in tallies and target.events is not None:
        found["events"] = group_events(tallies["events"], target.events.within)
    return KubernetesFacts(**base, reached=True, **found)


async def gather_kubernetes(targets: Sequence[KubernetesTarget], ctx: ProbeContext) -> AsyncIterator[KubernetesFacts]:
    """Probe every item concurrently; yield each one's facts as it completes."""
    async for facts in each_as_done(probe_one(t, ctx) for t in targets):
        yield facts


KIND: ProbeKind[KubernetesTarget, KubernetesFacts] = ProbeKind(
    name="kubernetes",
    section="kubernetes",
    cadence="daily",
    facts=KubernetesFacts,
    gather=gather_kubernetes,
    imports=("kubernetes.aio.client", "kubernetes.aio.config", "cryptography.x509"),
)


# -- reducing each list to counts and the objects worth a look ------------------------------


Keep = Callable[[dict[str, Any], float], "dict[str, Any] | None"]


@dataclass
class Tally:
    """One resource type reduced page by page: a count, counts by category, and the entries kept.

    Pages are reduced as they arrive, so a 5,000-pod list never sits in memory whole: only
    the compact entries of the objects worth a look do.
    """

    keep: Keep
    now: float
    category: Callable[[dict[str, Any]], str] | None = None
    total: int = 0
    by: Counter[str] = field(default_factory=Counter)
    kept: list[dict[str, Any]] = field(default_factory=list)

    def add(self, objects: Iterable[dict[str, Any]]) -> None:
        for obj in objects:
            self.total += 1
            if self.category is not None:
                self.by[self.category(obj)] += 1
            entry = self.keep(obj, self.now)
            if entry is not None:
                self.kept.append(entry)


def tally_for(key: str, target: KubernetesTarget, now: float) -> Tally:
    """How each resource type is reduced."""
    if key == "pods":
        return Tally(notable_pod, now, category=lambda obj: str(_dict(obj.get("status")).get("phase") or "Unknown"))
    if key in WORKLOAD_KINDS:
        kind = WORKLOAD_KINDS[key]
        return Tally(lambda obj, _: short_workload(kind, obj), now)
    if key == "events":
        settings = target.events
        within, ignore = (settings.within, set(settings.ignore_reasons)) if settings else (0.0, set())
        return Tally(lambda obj, at: recent_warning(obj, at, within, ignore), now)
    keeps: dict[str, Keep] = {
        "namespaces": lambda obj, _: {"name": _meta(obj).get("name")},
        "horizontalpodautoscalers": lambda obj, _: notable_hpa(obj),
        "nodes": lambda obj, _: notable_node(obj),
        "services": lambda obj, _: service_entry(obj),
        "endpointslices": lambda obj, _: slice_entry(obj),
        "persistentvolumeclaims": unbound_pvc,
        "cronjobs": cronjob_entry,
        "certificates": certificate_entry,
        "secrets": tls_secret_entry,
    }
    return Tally(keeps[key], now)


def _meta(obj: Any) -> dict[str, Any]:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    return meta if isinstance(meta, dict) else {}


def _age(stamp: Any, now: float) -> float | None:
    """Seconds from an API timestamp (RFC 3339) to `now`; None when absent or unreadable."""
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return round(now - moment.timestamp(), 3)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _conditions(obj: Any) -> dict[str, dict[str, Any]]:
    found = _list(_dict(obj.get("status")).get("conditions"))
    return {c["type"]: c for c in found if isinstance(c, dict) and "type" in c}


def _short(text: Any, limit: int = 200) -> str | None:
    if not isinstance(text, str) or not text:
        return None
    words = " ".join(text.split())
    return words if len(words) <= limit else words[: limit - 1] + "…"


def _compact(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if v is not None and v != [] and v != {}}


# -- pods


def _healthy_at_a_glance(status: dict[str, Any]) -> bool:
    # Most pods of a healthy cluster: Running, every container ready, running, never restarted.
    statuses = _list(status.get("containerStatuses"))
    return (
        status.get("phase") == "Running"
        and bool(statuses)
        and all(
            isinstance(c, dict)
            and c.get("ready") is True
            and not c.get("restartCount")
            and "running" in _dict(c.get("state"))
            and not _dict(c.get("lastState"))
            for c in statuses
        )
    )


def _container(status: dict[str, Any], now: float, *, init: bool) -> dict[str, Any]:
    state = _dict(status.get("state"))
    last = _dict(_dict(status.get("lastState")).get("terminated"))
    entry: dict[str, Any] = {
        "name": str(status.get("name")),
        "ready": bool(status.get("ready")),
        "restarts": _int(status.get("restartCount")),
    }
    if init:
        entry["init"] = True
    if "running" in state:
        entry["state"] = "running"
        entry["started_age_s"] = _age(_dict(state["running"]).get("startedAt"), now)
    elif "waiting" in state:
        entry["state"] = "waiting"
        entry["reason"] = _dict(state["waiting"]).get("reason")
        entry["message"] = _short(_dict(state["waiting"]).get("message"))
    elif "terminated" in state:
        entry["state"] = "terminated"
        entry["reason"] = _dict(state["terminated"]).get("reason")
        entry["exit_code"] = _dict(state["terminated"]).get("exitCode")
    if last:
        entry["last_reason"] = last.get("reason")
        entry["last_exit_code"] = last.get("exitCode")
        entry["last_finished_age_s"] = _age(last.get("finishedAt"), now)
    return {k: v for k, v in entry.items() if v is not None}


def _container_is_fine(entry: dict[str, Any], phase: str) -> bool:
    if entry.get("init"):
        return entry.get("state") == "terminated" and entry.get("reason") == "Completed" and not entry["restarts"]
    if phase == "Succeeded":
        return not entry["restarts"]
    return entry["ready"] and entry.get("state") == "running" and not entry["restarts"] and "last_reason" not in entry


def notable_pod(obj: dict[str, Any], now: float) -> dict[str, Any] | None:
    """A pod with anything short of perfect, compact (the checks judge which matter); None for the rest."""
    status = _dict(obj.get("status"))
    if _healthy_at_a_glance(status):
        return None
    phase = str(status.get("phase") or "Unknown")
    containers = [
        _container(c, now, init=True) for c in _list(status.get("initContainerStatuses")) if isinstance(c, dict)
    ]
    containers += [
        _container(c, now, init=False) for c in _list(status.get("containerStatuses")) if isinstance(c, dict)
    ]
    odd = [c for c in containers if not _container_is_fine(c, phase)]
    if phase == "Succeeded" and not odd:
        return None
    meta = _meta(obj)
    owner = next((_dict(o) for o in _list(meta.get("ownerReferences")) if _dict(o).get("controller")), {})
    return _compact(
        {
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "phase": phase,
            "reason": status.get("reason"),
            "message": _short(status.get("message")),
            "age_s": _age(meta.get("creationTimestamp"), now),
            "finished_age_s": _finished_age(obj, status, now) if phase == "Failed" else None,
            "owner": f"{owner.get('kind')}/{owner.get('name')}" if owner else None,
            "unschedulable": _unschedulable(obj),
            "containers": odd,
        }
    )


def _finished_age(pod: dict[str, Any], status: dict[str, Any], now: float) -> float | None:
    """How long ago a Failed pod ended: its containers' end, else when it stopped being Ready."""
    ends = [
        _age(_dict(_dict(c.get("state")).get("terminated")).get("finishedAt"), now)
        for c in _list(status.get("containerStatuses"))
        if isinstance(c, dict)
    ]
    known = [age for age in ends if age is not None]
    if known:
        return min(known)
    return _age(_conditions(pod).get("Ready", {}).get("lastTransitionTime"), now)


def _unschedulable(pod: dict[str, Any]) -> str | None:
    # The scheduler's own words ("0/3 nodes are available: 3 Insufficient memory") say why a pod is Pending.
    scheduled = _conditions(pod).get("PodScheduled", {})
    if scheduled.get("status") == "False":
        return _short(scheduled.get("message")) or str(scheduled.get("reason") or "not scheduled")
    return None


# -- workloads, autoscalers, nodes


def short_workload(kind: str, obj: dict[str, Any]) -> dict[str, Any] | None:
    """A Deployment, StatefulSet or DaemonSet short of its desired replicas, or whose rollout stalled."""
    spec, status = _dict(obj.get("spec")), _dict(obj.get("status"))
    if kind == "DaemonSet":
        desired = _int(status.get("desiredNumberScheduled"))
        available = _int(status.get("numberAvailable"))
        ready = _int(status.get("numberReady"))
    else:
        desired = _int(spec.get("replicas")) if "replicas" in spec else 1
        ready = _int(status.get("readyReplicas"))
        # StatefulSets carry availableReplicas since 1.22; before that, ready is all there is.
        has_available = "availableReplicas" in status or kind == "Deployment"
        available = _int(status.get("availableReplicas")) if has_available else ready
    progressing = _conditions(obj).get("Progressing", {})
    stalled = progressing.get("reason") == "ProgressDeadlineExceeded" and progressing.get("status") == "False"
    if available >= desired and not stalled:
        return None
    meta = _meta(obj)
    return _compact(
        {
            "kind": kind,
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "desired": desired,
            "available": available,
            "ready": ready,
            "stalled": (_short(progressing.get("message")) or "ProgressDeadlineExceeded") if stalled else None,
            "paused": bool(spec.get("paused")) or None,
        }
    )


def notable_hpa(obj: dict[str, Any]) -> dict[str, Any] | None:
    """An HPA at its maximum, or with AbleToScale or ScalingActive False."""
    spec, status = _dict(obj.get("spec")), _dict(obj.get("status"))
    conditions = _conditions(obj)
    current, maximum = _int(status.get("currentReplicas")), _int(spec.get("maxReplicas"))
    unable = {
        kind: {"reason": c.get("reason"), "message": _short(c.get("message"))}
        for kind in ("AbleToScale", "ScalingActive")
        if (c := conditions.get(kind)) is not None
        and c.get("status") == "False"
        # A target scaled to zero disables scaling on purpose: not a fault.
        and c.get("reason") != "ScalingDisabled"
    }
    at_max = maximum > 0 and current >= maximum
    if not unable and not at_max:
        return None
    meta = _meta(obj)
    return {
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "current": current,
        "desired": _int(status.get("desiredReplicas")),
        "min": _int(spec.get("minReplicas")) or 1,
        "max": maximum,
        "at_max": at_max,
        "unable": unable,
    }


def notable_node(obj: dict[str, Any]) -> dict[str, Any] | None:
    """A node not Ready, under pressure, or cordoned."""
    conditions = _conditions(obj)
    ready = conditions.get("Ready", {})
    pressure = [kind for kind in PRESSURE_CONDITIONS if conditions.get(kind, {}).get("status") == "True"]
    cordoned = bool(_dict(obj.get("spec")).get("unschedulable"))
    if ready.get("status") == "True" and not pressure and not cordoned:
        return None
    return _compact(
        {
            "name": _meta(obj).get("name"),
            "ready": ready.get("status", "Unknown"),
            "ready_reason": ready.get("reason"),
            "ready_message": _short(ready.get("message")),
            "pressure": pressure,
            "cordoned": cordoned,
        }
    )


# -- services and volumes


def service_entry(obj: dict[str, Any]) -> dict[str, Any]:
    spec = _dict(obj.get("spec"))
    selector = _dict(spec.get("selector"))
    meta = _meta(obj)
    return {
        "namespace": str(meta.get("namespace")),
        "name": str(meta.get("name")),
        # No pods behind it by design (ExternalName, or endpoints managed by hand): not judged.
        "judged": spec.get("type") != "ExternalName" and bool(selector),
        "selector": ",".join(f"{k}={v}" for k, v in sorted(selector.items())),
    }


def slice_entry(obj: dict[str, Any]) -> dict[str, Any] | None:
    meta = _meta(obj)
    owner = _dict(meta.get("labels")).get("kubernetes.io/service-name")
    if not owner:
        return None
    endpoints = [_dict(_dict(e).get("conditions")) for e in _list(obj.get("endpoints"))]
    # The API says a nil `ready` is to be read as ready.
    not_ready = sum(1 for conditions in endpoints if conditions.get("ready") is False)
    return {
        "namespace": str(meta.get("namespace")),
        "service": str(owner),
        "ready": len(endpoints) - not_ready,
        "not_ready": not_ready,
    }


def services_without_endpoints(services: Tally, slices: Tally) -> dict[str, Any]:
    """Services with a selector and no ready endpoint in the EndpointSlices of their namespace."""
    ready: Counter[tuple[str, str]] = Counter()
    not_ready: Counter[tuple[str, str]] = Counter()
    for entry in slices.kept:
        key = (entry["namespace"], entry["service"])
        ready[key] += entry["ready"]
        not_ready[key] += entry["not_ready"]
    judged = [entry for entry in services.kept if entry["judged"]]
    notable = [
        {"namespace": e["namespace"], "name": e["name"], "not_ready": not_ready[key], "selector": e["selector"]}
        for e in judged
        if not ready[key := (e["namespace"], e["name"])]
    ]
    return {"total": len(judged), "skipped": services.total - len(judged), "notable": notable}


def unbound_pvc(obj: dict[str, Any], now: float) -> dict[str, Any] | None:
    phase = _dict(obj.get("status")).get("phase") or "Pending"
    if phase == "Bound":
        return None
    meta = _meta(obj)
    return _compact(
        {
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "phase": phase,
            "age_s": _age(meta.get("creationTimestamp"), now),
            "storage_class": _dict(obj.get("spec")).get("storageClassName"),
        }
    )


# -- CronJobs, certificates


def cronjob_entry(obj: dict[str, Any], now: float) -> dict[str, Any]:
    """Every CronJob, compact: the checks match them to the item's expectations by name and labels."""
    meta, spec, status = _meta(obj), _dict(obj.get("spec")), _dict(obj.get("status"))
    return _compact(
        {
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "labels": _dict(meta.get("labels")),
            "schedule": spec.get("schedule"),
            "suspended": bool(spec.get("suspend")),
            "age_s": _age(meta.get("creationTimestamp"), now),
            "last_success_age_s": _age(status.get("lastSuccessfulTime"), now),
            "last_schedule_age_s": _age(status.get("lastScheduleTime"), now),
            "active": len(_list(status.get("active"))),
        }
    )


def certificate_entry(obj: dict[str, Any], now: float) -> dict[str, Any]:
    """A cert-manager Certificate: Ready, its reason, and the dates of the certificate it holds."""
    meta, status = _meta(obj), _dict(obj.get("status"))
    ready = _conditions(obj).get("Ready", {})
    expired_for = _age(status.get("notAfter"), now)  # negative while it is valid
    valid_for = _age(status.get("notBefore"), now)
    return _compact(
        {
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "ready": ready.get("status", "Unknown"),
            "reason": ready.get("reason"),
            "message": _short(ready.get("message")),
            "not_after": status.get("notAfter"),
            "left_s": -expired_for if expired_for is not None else None,
            "lifetime_s": valid_for - expired_for if valid_for is not None and expired_for is not None else None,
            "secret": _dict(obj.get("spec")).get("secretName"),
        }
    )


def tls_secret_entry(obj: dict[str, Any], now: float) -> dict[str, Any]:
    """A TLS Secret's leaf certificate (the first in tls.crt): its dates and subject. tls.key is never read."""
    from cryptography import x509

    meta = _meta(obj)
    entry: dict[str, Any] = {"namespace": meta.get("namespace"), "name": meta.get("name")}
    encoded = _dict(obj.get("data")).get("tls.crt")
    if not encoded:
        return entry | {"error": "tls.crt is empty"}
    try:
        certificate = x509.load_pem_x509_certificates(base64.b64decode(encoded, validate=True))[0]
    except (ValueError, binascii.Error, IndexError, TypeError):
        return entry | {"error": "tls.crt is not a PEM certificate"}
    not_after = certificate.not_valid_after_utc
    subject = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return entry | {
        "not_after": not_after.isoformat().replace("+00:00", "Z"),
        "left_s": round(not_after.timestamp() - now, 3),
        "lifetime_s": round(not_after.timestamp() - certificate.not_valid_before_utc.timestamp(), 3),
        "subject": str(subject[0].value) if subject else certificate.subject.rfc4514_string(),
    }


# -- events


def recent_warning(obj: dict[str, Any], now: float, within: float, ignore: set[str]) -> dict[str, Any] | None:
    """A Warning event last seen within the window (ignored reasons marked), compact."""
    if obj.get("type") != "Warning":
        return None
    series = _dict(obj.get("series"))
    meta = _meta(obj)
    seen = (
        series.get("lastObservedTime")
        or obj.get("lastTimestamp")
        or obj.get("eventTime")
        or meta.get("creationTimestamp")
    )
    age = _age(seen, now)
    if age is None or age > within:
        return None
    involved = _dict(obj.get("involvedObject"))
    reason = str(obj.get("reason") or "")
    return {
        "namespace": str(involved.get("namespace") or meta.get("namespace") or ""),
        "kind": str(involved.get("kind") or "?"),
        "name": str(involved.get("name") or "?"),
        "reason": reason,
        "count": _int(series.get("count")) or _int(obj.get("count")) or 1,
        "age_s": age,
        "message": _short(obj.get("message") or obj.get("note")),
        "ignored": reason in ignore,
    }


def group_events(events: Tally, within: float) -> dict[str, Any]:
    """The window's Warning events grouped by object and reason, newest first."""
    groups: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    counted = [e for e in events.kept if not e["ignored"]]
    for event in counted:
        key = (event["namespace"], event["kind"], event["name"], event["reason"])
        group = groups.setdefault(
            key,
            {k: event[k] for k in ("namespace", "kind", "name", "reason")}
            | {"events": 0, "count": 0, "last_age_s": event["age_s"]},
        )
        group["events"] += 1
        group["count"] += event["count"]
        if event["age_s"] <= group["last_age_s"]:
            group["last_age_s"] = event["age_s"]
            group["message"] = event["message"]
    ordered = sorted(groups.values(), key=lambda g: g["last_age_s"])
    return {
        "within_s": within,
        "total": len(counted),
        "ignored": len(events.kept) - len(counted),
        "groups": [_compact(g) for g in ordered[:MAX_EVENT_GROUPS]],
        "more_groups": max(0, len(ordered) - MAX_EVENT_GROUPS),
    }
