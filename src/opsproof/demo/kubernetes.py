"""A Kubernetes API server emulator on loopback, and the demo cluster it serves.

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

Objects are plain dicts as the API server returns them; the builders below (`pod`,
`deployment`, `cronjob`, ...) make them in the states the checks look for::

    api = KubeApiEmulator(token="t0k")
    api.add(pod("shop", "api-1", waiting="CrashLoopBackOff", restarts=7))
    with serve_kube_api(api) as served:
        write_kubeconfig(folder / "kubeconfig", served, token="t0k")

`serve_demo_kubernetes()` is the demo's cluster (runbooks 000 and 002: pods, HPA,
backup CronJobs, cert-manager certificates).
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from opsproof.demo.certs import Authority
from opsproof.demo.services import free_port, serving
from opsproof.targets.kubernetes import LabelSelector

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


class ApiError(Exception):
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


# -- objects in the states the checks look for -------------------------------------------


def ago(seconds: float) -> str:
    """An API server timestamp `seconds` in the past (negative: in the future)."""
    return _stamp(datetime.now(UTC) - timedelta(seconds=seconds))


def _stamp(moment: datetime) -> str:
    """RFC 3339 in whole seconds, as the API server writes metadata times: 2026-11-24T10:45:00Z."""
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _meta(namespace: str | None, name: str, labels: Mapping[str, str] | None, age: float) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "creationTimestamp": ago(age), "labels": dict(labels or {"app": name})}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def namespace(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": _meta(None, name, {}, 86400 * 90),
        "status": {"phase": "Active"},
    }


def pod(
    ns: str,
    name: str,
    *,
    phase: str = "Running",
    ready: bool = True,
    restarts: int = 0,
    waiting: str | None = None,
    terminated: str | None = None,
    last_terminated: str | None = None,
    last_finished: float = 3600.0,
    age: float = 86400.0,
    started: float | None = None,
    reason: str | None = None,
    labels: Mapping[str, str] | None = None,
    node: str = "node-1",
    containers: int = 1,
    init_waiting: str | None = None,
    unschedulable: str | None = None,
    finished: float = 600.0,
) -> dict[str, Any]:
    """A pod as the API server lists it (status as the kubelet writes it), its first container in the state given."""
    labels = dict(labels or {"app": name.rsplit("-", 2)[0]})
    specs = [
        {
            "name": f"{labels.get('app', 'app')}{'' if i == 0 else f'-sidecar-{i}'}",
            "image": f"registry.example.com/{labels.get('app', 'app')}:1.4.{i}",
            "ports": [{"containerPort": 8080 + i, "protocol": "TCP"}],
            "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "256Mi"}},
            "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "PORT", "value": str(8080 + i)}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080 + i}, "periodSeconds": 10},
            "terminationMessagePath": "/dev/termination-log",
            "imagePullPolicy": "IfNotPresent",
        }
        for i in range(containers)
    ]
    statuses = []
    for index, spec in enumerate(specs):
        first = index == 0
        state: dict[str, Any]
        if first and waiting:
            state = {"waiting": {"reason": waiting, "message": f"{waiting}: see kubectl describe pod {name}"}}
        elif first and terminated:
            state = {
                "terminated": {
                    "reason": terminated,
                    "exitCode": 137 if terminated == "OOMKilled" else 1,
                    "finishedAt": ago(60),
                }
            }
        elif phase == "Succeeded":
            state = {"terminated": {"reason": "Completed", "exitCode": 0, "finishedAt": ago(age / 2)}}
        elif phase == "Failed":
            state = {"terminated": {"reason": "Error", "exitCode": 1, "finishedAt": ago(finished)}}
        elif phase == "Pending":
            state = {"waiting": {"reason": "ContainerCreating"}}
        else:
            state = {"running": {"startedAt": ago(started if started is not None else age)}}
        status: dict[str, Any] = {
            "name": spec["name"],
            "image": spec["image"],
            "imageID": f"registry.example.com/{spec['name']}@sha256:{'ab' * 32}",
            "containerID": f"containerd://{secrets.token_hex(32)}",
            "ready": ready if first else phase == "Running",
            "started": "running" in state,
            "restartCount": restarts if first else 0,
            "state": state,
            "lastState": {},
        }
        if first and (last_terminated or restarts):
            status["lastState"] = {
                "terminated": {
                    "reason": last_terminated or "Error",
                    "exitCode": 137 if last_terminated == "OOMKilled" else 1,
                    "startedAt": ago(last_finished + 600),
                    "finishedAt": ago(last_finished),
                }
            }
        statuses.append(status)
    pod_status: dict[str, Any] = {
        "phase": phase,
        "hostIP": "10.0.0.11",
        "podIP": "10.244.1.23",
        "startTime": ago(age),
        "qosClass": "Burstable",
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready and phase == "Running" else "False",
                "lastTransitionTime": ago(age),
            },
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": ago(age)},
        ],
        "containerStatuses": statuses,
    }
    if unschedulable:
        # The scheduler found no node: no containers were ever created, and it says why.
        pod_status = {
            "phase": "Pending",
            "qosClass": "Burstable",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": unschedulable,
                    "lastTransitionTime": ago(age),
                }
            ],
        }
    if reason:
        pod_status["reason"] = reason
        pod_status["message"] = f"The node was low on resource: memory. ({reason})" if reason == "Evicted" else reason
    if init_waiting:
        pod_status["initContainerStatuses"] = [
            {
                "name": "migrate",
                "ready": False,
                "restartCount": 4,
                "state": {"waiting": {"reason": init_waiting}},
                "lastState": {},
            }
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            **_meta(ns, name, labels, age),
            "generateName": name.rsplit("-", 1)[0] + "-",
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": name.rsplit("-", 1)[0],
                    "uid": "6f1c2d3e-0000-4000-8000-000000000001",
                    "controller": True,
                }
            ],
            "managedFields": [
                {
                    "manager": "kubelet",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": ago(age),
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:status": {"f:conditions": {}, "f:containerStatuses": {}, "f:phase": {}}},
                }
            ],
        },
        "spec": {
            "containers": specs,
            "nodeName": node,
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
        },
        "status": pod_status,
    }


def deployment(
    ns: str,
    name: str,
    *,
    replicas: int = 3,
    available: int | None = None,
    stalled: bool = False,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    available = replicas if available is None else available
    conditions = [
        {
            "type": "Available",
            "status": "True" if available >= replicas else "False",
            "reason": "MinimumReplicasAvailable",
        },
        {
            "type": "Progressing",
            "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": f'ReplicaSet "{name}-7d4b9" has timed out progressing.',
        }
        if stalled
        else {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
    ]
    status = {
        "replicas": replicas,
        "readyReplicas": available,
        "availableReplicas": available,
        "updatedReplicas": replicas,
        "conditions": conditions,
    }
    if not available:
        del status["availableReplicas"]  # the API server omits zero counts
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(ns, name, labels, 86400 * 30),
        "spec": {"replicas": replicas},
        "status": status,
    }


def statefulset(
    ns: str, name: str, *, replicas: int = 3, available: int | None = None, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    available = replicas if available is None else available
    status = {
        "replicas": replicas,
        "readyReplicas": available,
        "availableReplicas": available,
        "currentReplicas": replicas,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(ns, name, labels, 86400 * 30),
        "spec": {"replicas": replicas},
        "status": status,
    }


def daemonset(
    ns: str, name: str, *, desired: int = 3, available: int | None = None, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    available = desired if available is None else available
    status = {
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": desired,
        "numberReady": available,
        "numberAvailable": available,
        "numberMisscheduled": 0,
    }
    if available < desired:
        status["numberUnavailable"] = desired - available
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta(ns, name, labels, 86400 * 30),
        "status": status,
    }


def hpa(
    ns: str,
    name: str,
    *,
    current: int = 3,
    minimum: int = 2,
    maximum: int = 10,
    able: bool = True,
    active: bool = True,
    inactive_reason: str = "FailedGetResourceMetric",
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    # The HPA controller's own messages (pkg/controller/podautoscaler).
    unable = (
        f'the HPA controller was unable to get the target\'s current scale: deployments/scale.apps "{name}" not found'
    )
    no_metrics = (
        "the HPA was unable to compute the replica count: unable to get metrics for resource cpu: "
        "no metrics returned from resource metrics API"
    )
    computed = "the HPA was able to successfully calculate a replica count from cpu resource utilization"
    conditions = [
        {
            "type": "AbleToScale",
            "status": "True" if able else "False",
            "reason": "ReadyForNewScale" if able else "FailedGetScale",
            "message": "recommended size matches current size" if able else unable,
        },
        {
            "type": "ScalingActive",
            "status": "True" if active else "False",
            "reason": "ValidMetricFound" if active else inactive_reason,
            "message": computed if active else no_metrics,
        },
        {
            "type": "ScalingLimited",
            "status": "True" if current >= maximum else "False",
            "reason": "TooManyReplicas" if current >= maximum else "DesiredWithinRange",
        },
    ]
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(ns, name, labels, 86400 * 30),
        "spec": {
            "minReplicas": minimum,
            "maxReplicas": maximum,
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        },
        "status": {"currentReplicas": current, "desiredReplicas": current, "conditions": conditions},
    }


def node(
    name: str,
    *,
    ready: str = "True",
    pressure: Iterable[str] = (),
    unschedulable: bool = False,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    under = set(pressure)
    conditions = [
        {
            "type": kind,
            "status": "True" if kind in under else "False",
            "reason": f"KubeletHas{'Insufficient' if kind in under else 'Sufficient'}{kind.removesuffix('Pressure')}",
        }
        for kind in ("MemoryPressure", "DiskPressure", "PIDPressure")
    ]
    conditions.append(
        {
            "type": "Ready",
            "status": ready,
            "reason": "KubeletReady"
            if ready == "True"
            else "NodeStatusUnknown"
            if ready == "Unknown"
            else "KubeletNotReady",
            "message": "kubelet is posting ready status"
            if ready == "True"
            else "Kubelet stopped posting node status."
            if ready == "Unknown"
            else "container runtime network not ready",
        }
    )
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": _meta(
            None,
            name,
            {"kubernetes.io/hostname": name, "node.kubernetes.io/instance-type": "m5.large", **(labels or {})},
            86400 * 60,
        ),
        "spec": {"podCIDR": "10.244.1.0/24"},
        "status": {"conditions": conditions, "nodeInfo": {"kubeletVersion": "v1.31.0", "osImage": "Ubuntu 24.04 LTS"}},
    }
    if unschedulable:
        obj["spec"]["unschedulable"] = True
    return obj


def service(
    ns: str,
    name: str,
    *,
    selector: Mapping[str, str] | None = None,
    type_: str = "ClusterIP",
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": type_, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}
    if type_ == "ExternalName":
        spec = {"type": type_, "externalName": f"{name}.example.com"}
    elif selector is None:
        spec["selector"] = {"app": name}
    elif selector:
        spec["selector"] = dict(selector)
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(ns, name, labels, 86400 * 30), "spec": spec}


def endpoint_slice(
    ns: str, service_name: str, *, ready: int = 2, not_ready: int = 0, suffix: str = "abcde"
) -> dict[str, Any]:
    endpoints = [
        {
            "addresses": [f"10.244.1.{i + 10}"],
            "conditions": {"ready": i < ready, "serving": i < ready, "terminating": False},
            "nodeName": "node-1",
        }
        for i in range(ready + not_ready)
    ]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": _meta(
            ns,
            f"{service_name}-{suffix}",
            {
                "kubernetes.io/service-name": service_name,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
            3600,
        ),
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
    }


def pvc(
    ns: str,
    name: str,
    *,
    phase: str = "Bound",
    age: float = 86400.0,
    storage_class: str = "gp3",
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    spec = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "10Gi"}},
        "storageClassName": storage_class,
    }
    if phase == "Bound":
        spec["volumeName"] = f"pvc-{secrets.token_hex(8)}"
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(ns, name, labels, age),
        "spec": spec,
        "status": {"phase": phase},
    }


def cronjob(
    ns: str,
    name: str,
    *,
    last_success: float | None = 3600.0,
    last_schedule: float | None = None,
    schedule: str = "0 2 * * *",
    suspend: bool = False,
    age: float = 86400.0 * 30,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if last_schedule is not None or last_success is not None:
        status["lastScheduleTime"] = ago(last_schedule if last_schedule is not None else last_success or 0)
    if last_success is not None:
        status["lastSuccessfulTime"] = ago(last_success)
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _meta(ns, name, labels, age),
        "spec": {
            "schedule": schedule,
            "suspend": suspend,
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [{"name": name, "image": f"registry.example.com/{name}:1"}],
                            "restartPolicy": "OnFailure",
                        }
                    }
                }
            },
        },
        "status": status,
    }


def certificate(
    ns: str,
    name: str,
    *,
    days_left: float = 60.0,
    lifetime_days: float = 90.0,
    ready: bool = True,
    reason: str | None = None,
    message: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A cert-manager Certificate (cert-manager.io/v1) with its status as cert-manager writes it."""
    not_after = datetime.now(UTC) + timedelta(days=days_left)
    not_before = not_after - timedelta(days=lifetime_days)
    condition = {
        "type": "Ready",
        "status": "True" if ready else "False",
        "reason": reason or ("Ready" if ready else "Failed"),
        "message": message
        or (
            "Certificate is up to date and has not expired"
            if ready
            else "The certificate request has failed to complete and will be retried"
        ),
        "lastTransitionTime": ago(3600),
    }
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": _meta(ns, name, labels, 86400 * 60),
        "spec": {
            "secretName": f"{name}-tls",
            "dnsNames": [f"{name}.example.com"],
            "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"},
        },
        "status": {
            "conditions": [condition],
            "notBefore": _stamp(not_before),
            "notAfter": _stamp(not_after),
            "renewalTime": _stamp(not_after - timedelta(days=lifetime_days / 3)),
        },
    }


def tls_secret(
    ns: str,
    name: str,
    *,
    days_left: float = 60.0,
    lifetime_days: float = 90.0,
    authority: Authority | None = None,
    crt: bytes | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A Secret of type kubernetes.io/tls whose tls.crt (a leaf and its chain) expires in `days_left`."""
    key_pem = b""
    if crt is None:
        issuer = authority or Authority.create()
        not_after = datetime.now(UTC) + timedelta(days=days_left)
        leaf = issuer.issue(
            f"{name}.example.com", not_before=not_after - timedelta(days=lifetime_days), not_after=not_after
        )
        crt, key_pem = leaf.chain_pem, leaf.key_pem
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": _meta(ns, name, labels, 86400 * 30),
        "data": {"tls.crt": base64.b64encode(crt).decode(), "tls.key": base64.b64encode(key_pem).decode()},
    }


def opaque_secret(ns: str, name: str, value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _meta(ns, name, {}, 86400),
        "data": {"password": base64.b64encode(value.encode()).decode()},
    }


def event(
    ns: str,
    name: str,
    *,
    reason: str = "BackOff",
    message: str = "Back-off restarting failed container",
    kind: str = "Pod",
    object_name: str = "api-1",
    type_: str = "Warning",
    last_seen: float = 600.0,
    count: int = 1,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": _meta(ns, name, {}, last_seen + 60),
        "involvedObject": {"kind": kind, "namespace": ns, "name": object_name, "apiVersion": "v1"},
        "reason": reason,
        "message": message,
        "type": type_,
        "count": count,
        "firstTimestamp": ago(last_seen + 60 * count),
        "lastTimestamp": ago(last_seen),
        "source": {"component": "kubelet", "host": "node-1"},
    }


# -- the demo cluster --------------------------------------------------------------------

DEMO_NAMESPACE = "scorpius-platform"
KUBECONFIG_VARIABLE = "DEMO_KUBECONFIG"
TOKEN_VARIABLE = "DEMO_K8S_TOKEN"
DEMO_PORT = 16443


def demo_objects() -> list[dict[str, Any]]:
    """Runbook 000's platform and 002's daily script: mostly healthy, with one of each common trouble.

    Warnings: reporting-worker restarted 6 times, the wallet-guard HPA is at its maximum
    (capacity), api-tls expires in 12 days, a BackOff warning event. Failures: reporting-worker
    is in CrashLoopBackOff (so its Deployment is 0/1 and its Service has no ready endpoint), the
    security-scan CronJob last succeeded 30 hours ago (runbook 002's daily security scanner).
    redis-0 was OOMKilled three days ago: outside the 24h window, history.
    """
    ns = DEMO_NAMESPACE
    objects: list[dict[str, Any]] = [namespace(ns), namespace("kube-system")]
    objects += [node(f"node-{i}") for i in (1, 2, 3)]
    for app, replicas in (("wallet-guard", 3), ("auth-proxy", 2), ("usage-meter", 2), ("audit-trail", 2)):
        objects.append(deployment(ns, app, replicas=replicas))
        objects += [pod(ns, f"{app}-7d4b9-{i:05x}", labels={"app": app}) for i in range(replicas)]
        objects += [service(ns, app), endpoint_slice(ns, app, ready=replicas)]
    objects.append(deployment(ns, "reporting-worker", replicas=1, available=0))
    objects.append(
        pod(
            ns,
            "reporting-worker-5c8f7-2k9xq",
            labels={"app": "reporting-worker"},
            ready=False,
            waiting="CrashLoopBackOff",
            restarts=6,
            last_finished=120,
        )
    )
    objects += [service(ns, "reporting-worker"), endpoint_slice(ns, "reporting-worker", ready=0, not_ready=1)]
    objects.append(statefulset(ns, "postgresql", replicas=1))
    objects.append(pod(ns, "postgresql-0", labels={"app": "postgresql"}))
    objects.append(pvc(ns, "data-postgresql-0"))
    objects.append(statefulset(ns, "redis", replicas=1))
    objects.append(
        pod(ns, "redis-0", labels={"app": "redis"}, restarts=1, last_terminated="OOMKilled", last_finished=86400 * 3)
    )
    objects.append(daemonset("kube-system", "node-exporter", desired=3))
    objects.append(hpa(ns, "wallet-guard", current=10, maximum=10))
    objects.append(hpa(ns, "auth-proxy", current=2, maximum=6))
    objects.append(cronjob(ns, "postgres-backup", last_success=3 * 3600, labels={"app": "backup"}))
    objects.append(
        cronjob(ns, "security-scan", last_success=30 * 3600, schedule="0 1 * * *", labels={"app": "security-scanner"})
    )
    objects.append(certificate(ns, "api-tls", days_left=12))
    objects.append(certificate(ns, "auth-proxy-tls", days_left=75))
    objects.append(event(ns, "reporting-worker.17f2a", object_name="reporting-worker-5c8f7-2k9xq", count=14))
    return objects


def stage_demo_logs(emulator: KubeApiEmulator) -> None:
    """Runbook 000's `kubectl logs deployment/auth-proxy | grep "authentication failed"`: over its warn count.

    34 failed logins in the last day across the two auth-proxy pods (the demo profile warns
    at 20), a few rate-limited requests (under their threshold), and older failures from two
    days ago that the 24h window leaves out.
    """
    for index, failures in enumerate((20, 14)):
        name = f"auth-proxy-7d4b9-{index:05x}"
        lines = [
            (3600.0 * 20 - i * 97, f"WARN authentication failed for user ops{i % 5} from 10.0.4.{i}")
            for i in range(failures)
        ]
        lines += [(7200.0 - i * 60, "INFO rate_limit_exceeded client=usage-meter") for i in range(3)]
        lines += [(600.0 - i, f"INFO GET /v1/session/{i} 200") for i in range(50)]
        lines += [(86400.0 * 2 + i, "WARN authentication failed for user ops1 from 10.0.4.7") for i in range(40)]
        emulator.add_log(DEMO_NAMESPACE, name, "auth-proxy", lines)


@dataclass
class DemoKubernetes:
    """The demo cluster: where its kubeconfig is, and the token the profile passes as a secret."""

    kubeconfig: Path
    token: str
    url: str
    emulator: KubeApiEmulator = field(repr=False)

    @property
    def plain_vars(self) -> dict[str, str]:
        return {KUBECONFIG_VARIABLE: str(self.kubeconfig)}

    @property
    def environ(self) -> dict[str, str]:
        return {TOKEN_VARIABLE: self.token}

    @property
    def line(self) -> str:
        return (
            f"Kubernetes API (emulated) at {self.url}, kubeconfig {self.kubeconfig} "
            "(reporting-worker crash-loops, the security-scan CronJob is late, auth-proxy logs many failed logins)"
        )


@contextmanager
def serve_demo_kubernetes(port: int = DEMO_PORT) -> Iterator[DemoKubernetes]:
    """Start the demo cluster's API on 127.0.0.1 (HTTPS, its own CA); yield its kubeconfig and token.

    The kubeconfig holds the cluster and its CA but no credentials: the profile gives the
    token as `token: ${DEMO_K8S_TOKEN}`, so reports show the reference, never the value.
    """
    token = secrets.token_urlsafe(32)
    emulator = KubeApiEmulator(token=token)
    emulator.extend(demo_objects())
    stage_demo_logs(emulator)
    with (
        tempfile.TemporaryDirectory(prefix="opsproof-demo-k8s-") as folder,
        serve_kube_api(emulator, port=port) as served,
    ):
        path = write_kubeconfig(Path(folder) / "kubeconfig", served, context="demo")
        yield DemoKubernetes(kubeconfig=path, token=token, url=served.url, emulator=emulator)
