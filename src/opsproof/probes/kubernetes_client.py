"""The Kubernetes API client of the probe: credentials, one paginated list, and its failures in words.

The client is the official one's asyncio variant (`kubernetes.aio`, aiohttp underneath):
it reads the kubeconfig (exec plugins, client certificates, tokens) or the in-cluster
service account, and makes the requests; every request is a GET with `limit`/`continue`.
Pages are handed to a `Tally` (opsproof.probes.kubernetes_reduce) as they arrive.
"""

from __future__ import annotations

import json
import os
import ssl
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from opsproof.errors import OpsproofError
from opsproof.probes import describe_connect_error
from opsproof.redaction import Redactor, mask
from opsproof.targets.kubernetes import ClusterAccess, read_kubeconfig


class PageSink(Protocol):
    """Where a list's pages go as they arrive (a `Tally` of opsproof.probes.kubernetes_reduce)."""

    def add(self, objects: Iterable[dict[str, Any]]) -> None: ...


def _namespace_of(obj: dict[str, Any]) -> Any:
    meta = obj.get("metadata")
    return meta.get("namespace") if isinstance(meta, dict) else None


SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class Listing:
    """One resource type as the probe lists it."""

    key: str  # the name facts and checks use
    prefix: str  # /api/v1 or /apis/<group>/<version>
    plural: str
    namespaced: bool = True
    selectable: bool = False  # the item's label selector applies
    field_selector: str | None = None
    label_selector: str | None = None  # a selector of its own (a `resources:` entry's)

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
        Listing("podmetrics", "/apis/metrics.k8s.io/v1beta1", "pods", selectable=True),
        Listing("nodemetrics", "/apis/metrics.k8s.io/v1beta1", "nodes", namespaced=False),
        Listing("ingresses", "/apis/networking.k8s.io/v1", "ingresses"),
        Listing("networkpolicies", "/apis/networking.k8s.io/v1", "networkpolicies"),
    )
}
# Lists of the aspects that are off unless configured (usage, ingresses, network_policies).
OPT_IN_LISTINGS = frozenset({"podmetrics", "nodemetrics", "ingresses", "networkpolicies"})


# -- connecting ------------------------------------------------------------------------


class ConfigProblem(OpsproofError):
    """The kubeconfig, context or service account cannot be used: the checks cannot run."""


@dataclass
class Connection:
    """An API client for one item and the secrets its errors must never show."""

    client: Any  # kubernetes.aio.client.ApiClient
    server: str
    context: str | None
    secrets: list[str] = field(default_factory=list)
    redactor: Redactor = field(default_factory=Redactor)

    def scrub(self, text: str) -> str:
        text = self.redactor.redact(text)
        for secret in self.secrets:
            text = mask(text, secret)
        return text


async def connect(
    target: ClusterAccess,
    *,
    service_account: Path = SERVICE_ACCOUNT_DIR,
    environ: Mapping[str, str] | None = None,
    redactor: Redactor | None = None,
) -> Connection:
    """An aio ApiClient configured from the item: kubeconfig and context, or in-cluster; raise ConfigProblem."""
    redactor = redactor if redactor is not None else Redactor()
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
            raise ConfigProblem(_config_message(exc, target, redactor)) from None
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
    return Connection(
        client=client,
        server=configuration.host,
        context=context,
        secrets=_secrets_of(configuration),
        redactor=redactor,
    )


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


def _config_message(exc: BaseException, target: ClusterAccess, redactor: Redactor) -> str:
    text = str(exc).strip() or type(exc).__name__
    if target.in_cluster:
        return f"cannot use the in-cluster service account: {text}"
    where = f" (context {target.context})" if target.context else ""
    return redactor.redact(f"cannot use kubeconfig {target.kubeconfig}{where}: {text}")


# -- listing ---------------------------------------------------------------------------


class ListFailure(OpsproofError):
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
        into: PageSink,
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
            into.add(objects if only is None else [obj for obj in objects if _namespace_of(obj) in only])
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
        crd = {
            "certificates": " (is cert-manager installed?)",
            "podmetrics": " (is metrics-server installed?)",
            "nodemetrics": " (is metrics-server installed?)",
        }.get(listing.key, " (is its CRD installed?)" if listing.key.startswith("resource/") else "")
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
