"""A Kubernetes API server emulator on loopback, for tests, benchmarks and the demo.

No real API server can be had on a laptop or a CI runner without a container runtime,
so the demo and the tests talk to this one: an aiohttp app that serves the Kubernetes
REST read endpoints from objects held in memory, through the real `kubernetes` client
and a real kubeconfig file. It does what the checks rely on an API server to do:

- `GET /api/v1/...` and `/apis/<group>/<version>/...`: list (cluster-wide or in a
  namespace) and get, with `labelSelector` (the full grammar), `fieldSelector` (only
  the fields the API server supports for that resource: anything else is a 400, as
  there), and pagination with `limit` and an opaque `continue` token, items ordered
  by namespace and name as etcd returns them;
- bearer-token authentication (401 `Unauthorized` for a missing or wrong token),
  a `forbidden` set of resources (403 with the API server's message), 404 for a
  resource it does not serve (a CRD that is not installed);
- every request recorded (`requests`: method, path, query), and every method other
  than GET refused with 405, so a test can prove the checks only read;
- `pods/<name>/log` (`container`, `sinceSeconds`, `limitBytes`, `timestamps`) from log
  lines given with `add_log`; `forbidden` takes `pods/log` as RBAC names it;
- the metrics API (`metrics.k8s.io/v1beta1` pods and nodes, what `kubectl top` reads),
  served once installed as metrics-server installs it; ingresses, network policies and
  Endpoints; and any custom resource once `define`d (KEDA ScaledObjects, Argo CD
  Applications...), or given an object of a CRD the emulator knows.

Objects are plain dicts as the API server returns them; the builders of
`opsproof.testing.kube_objects` (`pod`, `deployment`, `cronjob`, ...) make them in the
states the checks look for::

    api = KubeApiEmulator(token="t0k")
    api.add(pod("shop", "api-1", waiting="CrashLoopBackOff", restarts=7))
    with serve_kube_api(api) as served:
        write_kubeconfig(folder / "kubeconfig", served, token="t0k")
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from opsproof.errors import OpsproofError
from opsproof.targets.kubernetes import LabelSelector
from opsproof.testing.certs import Authority
from opsproof.testing.servers import free_port, serving

# -- what the emulator serves ------------------------------------------------------------

# Field selectors the API server accepts besides metadata.name and metadata.namespace
# (from each resource's registry strategy: pkg/registry/*/strategy.go, GetAttrs/AddFieldLabelConversionFunc).
_POD_FIELDS = (
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
)
_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)


@dataclass(frozen=True)
class ApiResource:
    """One resource type: where it is served and what can select it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    fields: tuple[str, ...] = ()
    crd: bool = False  # served only once installed (`install`) or given an object

    @property
    def key(self) -> str:
        """kubectl's name for it: `pods`, `deployments.apps`, `certificates.cert-manager.io`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


RESOURCES: tuple[ApiResource, ...] = (
    ApiResource("", "v1", "namespaces", "Namespace", namespaced=False, fields=("status.phase",)),
    ApiResource("", "v1", "pods", "Pod", fields=_POD_FIELDS),
    ApiResource("", "v1", "nodes", "Node", namespaced=False, fields=("spec.unschedulable",)),
    ApiResource("", "v1", "services", "Service"),
    ApiResource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim"),
    ApiResource("", "v1", "secrets", "Secret", fields=("type",)),
    ApiResource("", "v1", "events", "Event", fields=_EVENT_FIELDS),
    ApiResource("apps", "v1", "deployments", "Deployment"),
    ApiResource("apps", "v1", "statefulsets", "StatefulSet"),
    ApiResource("apps", "v1", "daemonsets", "DaemonSet"),
    ApiResource("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler"),
    ApiResource("batch", "v1", "cronjobs", "CronJob"),
    ApiResource("batch", "v1", "jobs", "Job", fields=("status.successful",)),
    ApiResource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
    ApiResource("cert-manager.io", "v1", "certificates", "Certificate", crd=True),
    ApiResource("", "v1", "endpoints", "Endpoints"),
    ApiResource("networking.k8s.io", "v1", "ingresses", "Ingress"),
    ApiResource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"),
    # metrics-server's aggregated API: absent (404) until installed, as on a cluster without it.
    ApiResource("metrics.k8s.io", "v1beta1", "pods", "PodMetrics", crd=True),
    ApiResource("metrics.k8s.io", "v1beta1", "nodes", "NodeMetrics", namespaced=False, crd=True),
)
_BY_KIND = {(r.api_version, r.kind): r for r in RESOURCES}
_BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}


@dataclass(frozen=True)
class SeenRequest:
    """One request as the emulator received it."""

    method: str
    path: str
    query: dict[str, str]


class ApiError(OpsproofError):
    """Answered as a Kubernetes `Status` object."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def response(self) -> web.Response:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        return web.json_response(body, status=self.code)


@dataclass
class _Stored:
    obj: dict[str, Any]
    encoded: bytes  # serialized once: a 5,000-pod list is then a join, not 5,000 dumps


class KubeApiEmulator:
    """Kubernetes REST read endpoints over objects held in memory; see the module's docstring."""

    def __init__(
        self,
        token: str | None = None,
        *,
        user: str = "system:serviceaccount:ops:opsproof",
        echo_credentials: bool = False,
        latency: float = 0.0,
    ) -> None:
        self.token = token
        self.user = user
        # A careless proxy echoes what it was sent: the tests prove opsproof still never shows it.
        self.echo_credentials = echo_credentials
        self.latency = latency
        self.delays: dict[str, float] = {}  # resource key -> seconds before it answers (a slow list)
        self.requests: list[SeenRequest] = []
        self.forbidden: set[str] = set()  # see _authorize
        self._installed: set[str] = set()
        self._by_kind = dict(_BY_KIND)
        self._by_path = dict(_BY_PATH)
        self._objects: dict[str, dict[tuple[str, str], _Stored]] = {r.key: {} for r in RESOURCES}
        # (namespace, pod, container) -> [(unix time, line)], oldest first: what the kubelet would hold.
        self._logs: dict[tuple[str, str, str], list[tuple[float, str]]] = {}
        self._version = 1000

    # -- objects ---------------------------------------------------------------------------

    def add(self, *objects: Mapping[str, Any]) -> None:
        """Store objects (their apiVersion and kind say where); a CRD's object installs the CRD."""
        for given in objects:
            obj = json.loads(json.dumps(given))
            resource = self._by_kind.get((obj.get("apiVersion"), obj.get("kind")))
            if resource is None:
                raise ValueError(f"the emulator does not serve {obj.get('apiVersion')} {obj.get('kind')}")
            meta = obj.setdefault("metadata", {})
            self._version += 1
            meta["resourceVersion"] = str(self._version)
            meta.setdefault("uid", f"{self._version:08x}-0000-4000-8000-{secrets.token_hex(6)}")
            namespace = meta.get("namespace", "") if resource.namespaced else ""
            if resource.namespaced and not namespace:
                raise ValueError(f"{resource.kind} {meta.get('name')} needs a namespace")
            if resource.crd:
                self._installed.add(resource.key)
            self._objects[resource.key][(namespace, meta["name"])] = _Stored(obj, json.dumps(obj).encode())

    def extend(self, objects: Iterable[Mapping[str, Any]]) -> None:
        self.add(*objects)

    def install(self, key: str) -> None:
        """Serve a CRD's resource (with no objects yet)."""
        self._installed.add(key)

    def define(self, api_version: str, kind: str, plural: str, *, namespaced: bool = True) -> ApiResource:
        """Serve a custom resource (a CRD installed): `define("keda.sh/v1alpha1", "ScaledObject", "scaledobjects")`."""
        group, _, version = api_version.rpartition("/")
        resource = ApiResource(group, version, plural, kind, namespaced=namespaced, crd=True)
        self._by_kind[(resource.api_version, kind)] = resource
        self._by_path[(group, version, plural)] = resource
        self._objects.setdefault(resource.key, {})
        self._installed.add(resource.key)
        return resource

    def add_log(self, ns: str, pod_name: str, container: str, lines: Iterable[tuple[float, str]]) -> None:
        """Log lines of one container, each `(seconds ago, text)`; appended in time order."""
        now = datetime.now(UTC).timestamp()
        held = self._logs.setdefault((ns, pod_name, container), [])
        held.extend((now - age, text) for age, text in lines)
        held.sort(key=lambda entry: entry[0])

    def count(self, key: str) -> int:
        return len(self._objects[key])

    def clear_requests(self) -> None:
        self.requests.clear()

    # -- HTTP ------------------------------------------------------------------------------

    def app(self, routes: Iterable[web.RouteDef] = ()) -> web.Application:
        """The emulator as an aiohttp app; `routes` (a benchmark's own) are matched first."""
        app = web.Application(client_max_size=1024**2)
        app.add_routes(list(routes))
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one request as the API server would (any path, any method: everything is recorded)."""
        self.requests.append(SeenRequest(request.method, request.path, dict(request.query)))
        if self.latency:
            await asyncio.sleep(self.latency)
        try:
            self._authenticate(request)
            if request.method != "GET":
                raise ApiError(405, "MethodNotAllowed", f"the emulator serves get and list only, not {request.method}")
            if request.path == "/version":
                return web.json_response({"major": "1", "minor": "31", "gitVersion": "v1.31.0-opsproof-emulator"})
            resource, namespace, name, subresource = self._route(request.path)
            delay_key = f"{resource.key}/{subresource}" if subresource else resource.key
            if delay_key in self.delays:
                await asyncio.sleep(self.delays[delay_key])
            self._authorize(resource, namespace, "get" if name else "list", subresource)
            if subresource == "log" and name is not None and namespace is not None:
                return self._log(namespace, name, request.query)
            if name is not None:
                return self._get(resource, namespace, name)
            return self._list(resource, namespace, request.query)
        except ApiError as error:
            return error.response()

    def _authenticate(self, request: web.Request) -> None:
        if self.token is None:
            return
        given = request.headers.get("Authorization", "")
        scheme, _, credential = given.partition(" ")
        # The scheme is case-insensitive (the in-cluster loader sends "bearer").
        if scheme.lower() != "bearer" or credential != self.token:
            echoed = f" (you sent {given!r})" if self.echo_credentials and given else ""
            raise ApiError(401, "Unauthorized", f"Unauthorized{echoed}")

    def _authorize(self, resource: ApiResource, namespace: str | None, verb: str, subresource: str | None) -> None:
        # `forbidden` holds "pods" (everywhere), "pods@shop" (in namespace shop) or "pods@cluster"
        # (cluster-wide lists only: what a RoleBinding per namespace leaves out); "pods/log" for
        # the log subresource, which RBAC grants apart from the pods themselves.
        key = f"{resource.key}/{subresource}" if subresource else resource.key
        plural = f"{resource.plural}/{subresource}" if subresource else resource.plural
        scope = f"{key}@{namespace}" if namespace else f"{key}@cluster"
        if key in self.forbidden or scope in self.forbidden:
            where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
            raise ApiError(
                403,
                "Forbidden",
                f'{key} is forbidden: User "{self.user}" cannot {verb} resource "{plural}" '
                f'in API group "{resource.group}" {where}',
            )

    def _route(self, path: str) -> tuple[ApiResource, str | None, str | None, str | None]:
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise _not_found()
        namespace: str | None = None
        if len(rest) in (3, 4, 5) and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        subresource: str | None = None
        if len(rest) == 3 and (group, rest[0], rest[2]) == ("", "pods", "log") and namespace is not None:
            subresource, rest = "log", rest[:2]
        if len(rest) not in (1, 2):
            raise _not_found()
        resource = self._by_path.get((group, version, rest[0]))
        if resource is None or (resource.crd and resource.key not in self._installed):
            raise _not_found()
        if namespace is not None and not resource.namespaced:
            raise _not_found()
        return resource, namespace, rest[1] if len(rest) == 2 else None, subresource

    def _log(self, namespace: str, name: str, query: Mapping[str, str]) -> web.Response:
        """A container's log as the kubelet streams it through the API server: plain text, oldest first."""
        stored = self._objects["pods"].get((namespace, name))
        if stored is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found')
        containers = [str(c.get("name")) for c in stored.obj.get("spec", {}).get("containers", [])]
        container = query.get("container")
        if not container:
            if len(containers) != 1:
                raise ApiError(
                    400,
                    "BadRequest",
                    f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]",
                )
            container = containers[0]
        elif container not in containers:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
        lines = self._logs.get((namespace, name, container), [])
        since = query.get("sinceSeconds")
        if since:
            if not since.isdigit() or int(since) < 1:
                raise ApiError(422, "Invalid", "sinceSeconds: Invalid value: must be greater than 0")
            oldest = datetime.now(UTC).timestamp() - int(since)
            lines = [entry for entry in lines if entry[0] >= oldest]
        stamped = query.get("timestamps") in ("1", "true")
        body = "".join(
            (f"{datetime.fromtimestamp(at, UTC).isoformat().replace('+00:00', 'Z')} " if stamped else "") + text + "\n"
            for at, text in lines
        ).encode()
        limit = query.get("limitBytes")
        if limit:
            if not limit.isdigit() or int(limit) < 1:
                raise ApiError(422, "Invalid", "limitBytes: Invalid value: must be greater than 0")
            body = body[: int(limit)]
        return web.Response(body=body, content_type="text/plain")

    def _get(self, resource: ApiResource, namespace: str | None, name: str) -> web.Response:
        if resource.namespaced and namespace is None:
            raise _not_found()
        stored = self._objects[resource.key].get((namespace or "", name))
        if stored is None:
            raise ApiError(404, "NotFound", f'{resource.key} "{name}" not found')
        return web.Response(body=stored.encoded, content_type="application/json")

    def _list(self, resource: ApiResource, namespace: str | None, query: Mapping[str, str]) -> web.Response:
        if query.get("watch") in ("1", "true"):
            raise ApiError(400, "BadRequest", "the emulator does not serve watches")
        labels = _parse_labels(query.get("labelSelector", ""))
        fields = _parse_fields(query.get("fieldSelector", ""), resource)
        limit = _parse_limit(query.get("limit", ""))
        start = _decode_continue(query["continue"]) if query.get("continue") else None
        matched = [
            (key, stored)
            for key, stored in sorted(self._objects[resource.key].items())
            if (namespace is None or key[0] == namespace)
            and (start is None or key > start)
            and (labels is None or labels.matches(stored.obj["metadata"].get("labels")))
            and all(_field_matches(stored.obj, f, op, v) for f, op, v in fields)
        ]
        page = matched[:limit] if limit else matched
        rest = len(matched) - len(page)
        meta: dict[str, Any] = {"resourceVersion": str(self._version)}
        if rest:
            meta["continue"] = _encode_continue(page[-1][0])
            meta["remainingItemCount"] = rest
        head = {"kind": f"{resource.kind}List", "apiVersion": resource.api_version, "metadata": meta}
        body = json.dumps(head)[:-1].encode() + b', "items": [' + b",".join(s.encoded for _, s in page) + b"]}"
        return web.Response(body=body, content_type="application/json")


def _not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def _parse_labels(text: str) -> LabelSelector | None:
    if not text:
        return None
    try:
        return LabelSelector.parse(text)
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"unable to parse requirement: {exc}") from None


def _parse_fields(text: str, resource: ApiResource) -> list[tuple[str, str, str]]:
    terms = []
    for term in filter(None, (t.strip() for t in text.split(","))):
        for op in ("!=", "==", "="):
            if op in term:
                name, value = (s.strip() for s in term.split(op, 1))
                break
        else:
            raise ApiError(400, "BadRequest", f"invalid selector: '{text}'; can't understand '{term}'")
        if name not in ("metadata.name", "metadata.namespace", *resource.fields):
            raise ApiError(400, "BadRequest", f'field label not supported: {name}"')
        terms.append((name, "!=" if op == "!=" else "=", value))
    return terms


def _field_matches(obj: Mapping[str, Any], name: str, op: str, value: str) -> bool:
    found: Any = obj
    for part in name.split("."):
        found = found.get(part) if isinstance(found, dict) else None
    if isinstance(found, bool):
        text = "true" if found else "false"
    elif found is None:
        text = "false" if name == "spec.unschedulable" else ""
    elif isinstance(found, dict):  # events' `source` is matched by its component
        text = str(found.get("component", ""))
    else:
        text = str(found)
    return (text == value) if op == "=" else (text != value)


def _parse_limit(text: str) -> int:
    if not text:
        return 0
    if not text.isdigit():
        raise ApiError(400, "BadRequest", f"invalid limit {text!r}")
    return int(text)


def _encode_continue(key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps({"v": "meta.k8s.io/v1", "start": list(key)}).encode()).decode()


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        start = json.loads(base64.urlsafe_b64decode(token.encode()))["start"]
        return (str(start[0]), str(start[1]))
    except (ValueError, KeyError, IndexError, TypeError):
        raise ApiError(400, "BadRequest", "continue key is not valid") from None


# -- serving and kubeconfig files --------------------------------------------------------


@dataclass(frozen=True)
class ServedApi:
    """Where an emulator listens, and the CA its certificate chains to (None: plain HTTP)."""

    url: str
    ca_pem: bytes | None


@contextmanager
def serve_kube_api(
    emulator: KubeApiEmulator, *, tls: bool = True, port: int = 0, routes: Iterable[web.RouteDef] = ()
) -> Iterator[ServedApi]:
    """Serve `emulator` on 127.0.0.1 (HTTPS with a fresh CA, as API servers are) from a background thread."""
    if not tls:
        with serving(free_port(port), emulator.app(routes)) as address:
            yield ServedApi(f"http://{address}", None)
        return
    authority = Authority.create("opsproof kubernetes emulator CA")
    leaf = authority.issue()
    with serving(free_port(port), emulator.app(routes), ssl_context=leaf.server_context()) as address:
        yield ServedApi(f"https://{address}", authority.pem)


def kubeconfig(
    served: ServedApi,
    *,
    token: str | None = None,
    context: str = "emulator",
    namespace: str | None = None,
    extra_contexts: Iterable[str] = (),
) -> dict[str, Any]:
    """A kubeconfig (as a dict) for `served`: one cluster, one user, `context` current, plus named extras."""
    cluster: dict[str, Any] = {"server": served.url}
    if served.ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(served.ca_pem).decode()
    user: dict[str, Any] = {"token": token} if token is not None else {}
    contexts = [context, *extra_contexts]
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": cluster}],
        "users": [{"name": "opsproof", "user": user}],
        "contexts": [
            {
                "name": name,
                "context": {
                    "cluster": "emulator",
                    "user": "opsproof",
                    **({"namespace": namespace} if namespace else {}),
                },
            }
            for name in contexts
        ],
        "current-context": context,
    }


def write_kubeconfig(path: Path, served: ServedApi, **options: Any) -> Path:
    """Write `kubeconfig(served, **options)` to `path` (mode 0600: it may hold a token)."""
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(kubeconfig(served, **options), sort_keys=False))
    return path
