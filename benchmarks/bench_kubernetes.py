"""Benchmark: the kubernetes checks over a cluster of 5,000 pods in 50 namespaces.

Target (issue 5): the cluster is checked with a handful of list calls, not one per pod; report
the number of API calls and the wall time of the kubernetes checks. The cluster is the API
emulator of `opsproof.testing.kubernetes` (HTTPS, bearer token) in a process of its own, holding
5,000 healthy pods (100 per namespace) and, per namespace, 10 Deployments, a StatefulSet,
10 Services with their EndpointSlices, 2 HPAs, 2 PVCs, a backup CronJob, 2 cert-manager
Certificates, 2 TLS Secrets and 5 old Warning events; 50 nodes, a DaemonSet.

Two floors, measured in the same session and alternated with the opsproof runs:

- pytest running as many trivial tests as the run has checks (harness.run_floor);
- the raw list calls alone: the same lists (same paths, field selectors, page size) through
  the same client (`kubernetes.aio`), concurrently, each page parsed with json.loads, nothing
  else, in a process of its own with the client already imported (as the probe process has it).

Ratio = opsproof wall / (pytest floor + raw lists). The API calls are counted by the emulator.

Usage, from anywhere (the opsproof run's cwd is the repository root)::

    /work/venv/bin/python benchmarks/bench_kubernetes.py [--items 5000] [--namespaces 50] [--repeat 3] [--json out.json]
    /work/venv/bin/python benchmarks/bench_kubernetes.py --list-namespaces   # the 50 named in the profile

Exit status 0 when both targets are met (ratio <= 1.5, peak RSS <= 300 MiB), 1 when one is
missed, 2 when a run itself went wrong.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import harness
from harness import BenchError, Measure

CHECKS = ("pods", "restarts", "workloads", "hpa", "nodes", "services", "pvcs", "certificates", "tls_secrets", "events")
CHECK_COUNT = len(CHECKS) + 1  # and one cronjob part
TOKEN = "bench-t0ken"
PAGE_SIZE = 500


# -- the cluster (run in its own process) --------------------------------------------------


def cluster_objects(pods: int, namespaces: int) -> list[dict[str, Any]]:
    """A healthy cluster: `pods` pods spread over `namespaces` namespaces, and what runs them."""
    from opsproof.testing.certs import Authority
    from opsproof.testing.kube_objects import (
        certificate,
        cronjob,
        daemonset,
        deployment,
        endpoint_slice,
        event,
        hpa,
        namespace,
        node,
        pod,
        pvc,
        service,
        statefulset,
        tls_secret,
    )

    authority = Authority.create("bench issuer")
    objects: list[dict[str, Any]] = [node(f"node-{n:03d}") for n in range(namespaces)]
    objects.append(daemonset("kube-system", "node-exporter", desired=namespaces))
    per_namespace = math.ceil(pods / namespaces)
    made = 0
    for n in range(namespaces):
        ns = f"team-{n:02d}"
        objects.append(namespace(ns))
        apps = [f"svc-{a}" for a in range(10)]
        for index in range(min(per_namespace, pods - made)):
            app = apps[index % len(apps)]
            objects.append(pod(ns, f"{app}-7d4b9-{index:05x}", labels={"app": app}, node=f"node-{n:03d}"))
            made += 1
        for app in apps:
            objects += [deployment(ns, app, replicas=per_namespace // len(apps)), service(ns, app)]
            objects.append(endpoint_slice(ns, app, ready=3))
        objects += [statefulset(ns, "db", replicas=1), pvc(ns, "data-db-0"), pvc(ns, "cache")]
        objects += [hpa(ns, "svc-0", current=3, maximum=10), hpa(ns, "svc-1", current=2, maximum=6)]
        objects.append(cronjob(ns, f"backup-{n:02d}", last_success=3 * 3600, labels={"app": "backup"}))
        objects += [certificate(ns, f"web-{c}", days_left=60 + c) for c in range(2)]
        objects += [tls_secret(ns, f"web-{c}-tls", days_left=60 + c, authority=authority) for c in range(2)]
        objects += [event(ns, f"old.{e}", last_seen=3 * 86400, object_name=f"svc-{e}-x") for e in range(5)]
    return objects


def serve(pods: int, namespaces: int, folder: Path) -> None:
    """Serve the cluster over HTTPS; write its kubeconfig; print the URL; answer /_bench/requests with the counts."""
    from opsproof.testing.kubernetes import KubeApiEmulator

    api = KubeApiEmulator(token=TOKEN)
    api.extend(cluster_objects(pods, namespaces))
    serve_counted(api, folder)


def serve_counted(api: Any, folder: Path) -> None:
    """Serve `api` over HTTPS with /_bench/requests (the counts); write its kubeconfig and CA; print the URL."""
    from aiohttp import web

    from opsproof.testing.kubernetes import serve_kube_api, write_kubeconfig

    async def requests(request: web.Request) -> web.Response:
        seen = list(api.requests)
        if request.query.get("reset"):
            api.clear_requests()
        methods: dict[str, int] = {}
        paths: dict[str, int] = {}
        for item in seen:
            methods[item.method] = methods.get(item.method, 0) + 1
            paths[item.path] = paths.get(item.path, 0) + 1
        return web.json_response({"requests": len(seen), "methods": methods, "paths": paths})

    with serve_kube_api(api, routes=[web.get("/_bench/requests", requests)]) as served:
        write_kubeconfig(folder / "kubeconfig", served, token=TOKEN, context="bench")
        (folder / "ca.pem").write_bytes(served.ca_pem or b"")
        print(served.url, flush=True)
        while True:
            time.sleep(3600)


@contextmanager
def cluster(
    pods: int, namespaces: int, folder: Path, script: str = __file__, extra: Sequence[str] = ()
) -> Iterator[str]:
    """The emulator `script --serve` starts in a process of its own; yield its URL."""
    cmd = [sys.executable, script, "--serve", "--items", str(pods), "--namespaces", str(namespaces), *extra]
    with harness.child_server([*cmd, "--folder", str(folder)]) as (line, proc):
        if not line.startswith("https://"):
            raise BenchError(f"the emulator did not start (said {line!r}, exit {proc.poll()})")
        harness.wait_until(lambda: stats(line, folder)["requests"] >= 0, "the emulator never answered")
        yield line


def stats(url: str, folder: Path, *, reset: bool = False) -> dict[str, Any]:
    """The emulator's request counts since the last reset."""
    import ssl

    context = ssl.create_default_context(cafile=str(folder / "ca.pem"))
    with urllib.request.urlopen(
        f"{url}/_bench/requests{'?reset=1' if reset else ''}", context=context, timeout=10
    ) as r:
        data: dict[str, Any] = json.loads(r.read())
    return data


# -- the raw lists (the floor of any client), in a process of its own ----------------------


def raw_lists(folder: Path) -> None:
    """The probe's lists and nothing else: same paths, selectors, page size, client; print the wall time."""
    import asyncio

    from kubernetes.aio import client, config

    from opsproof.probes.kubernetes_client import LISTINGS, OPT_IN_LISTINGS

    async def main() -> dict[str, Any]:
        configuration = client.Configuration()
        await config.load_kube_config(
            str(folder / "kubeconfig"), client_configuration=configuration, persist_config=False
        )
        api = client.ApiClient(configuration)

        async def one(path: str, field: str | None) -> tuple[int, int]:
            token, objects, calls = None, 0, 0
            while True:
                query: list[tuple[str, Any]] = [("limit", PAGE_SIZE)]
                query += [("fieldSelector", field)] if field else []
                query += [("continue", token)] if token else []
                response = await api.call_api(
                    path, "GET", query_params=query, auth_settings=["BearerToken"], _preload_content=False
                )
                page = json.loads(await response.read())
                calls += 1
                objects += len(page["items"])
                token = page["metadata"].get("continue")
                if not token:
                    return objects, calls

        started = time.perf_counter()
        done = await asyncio.gather(
            *(
                one(listing.path(None), listing.field_selector)
                for key, listing in LISTINGS.items()
                if key != "namespaces" and key not in OPT_IN_LISTINGS
            )
        )
        wall = time.perf_counter() - started
        await api.close()
        return {"wall_s": wall, "objects": sum(o for o, _ in done), "calls": sum(c for _, c in done)}

    print(json.dumps(asyncio.run(main())), flush=True)


def run_raw(folder: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--raw", "--folder", str(folder)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise BenchError(f"the raw list run failed: {out.stderr[-2000:]}")
    data: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return data


# -- the profile and the measured run ------------------------------------------------------


def write_profile(path: Path, folder: Path, namespaces: int, list_namespaces: bool) -> None:
    scope = f", namespaces: [{', '.join(f'team-{n:02d}' for n in range(namespaces))}]" if list_namespaces else ""
    path.write_text(
        "environment: bench\n"
        "defaults: {timeout: 30s}\n"
        "kubernetes:\n"
        f"  - {{name: bench-cluster, kubeconfig: '{folder / 'kubeconfig'}'{scope}, page_size: {PAGE_SIZE}, "
        "certificates: {}, tls_secrets: {}, events: {}, "
        "cronjobs: [{name: backups, match: 'backup-*', last_success: {warn: 25h, fail: 26h}}]}\n"
    )


def run_opsproof(work: Path, profile: Path, url: str, index: int) -> tuple[Measure, dict[str, Any]]:
    stats(url, work, reset=True)
    result, results, bundle_bytes = harness.run_daily(work, profile, index)
    seen = stats(url, work, reset=True)
    checks = harness.all_passed(results, CHECK_COUNT)
    observed = checks[0]["observed"]
    pods = next(c for c in checks if c["check"] == "kubernetes.pods[bench-cluster]")["observed"]["pods"]
    if set(seen["methods"]) != {"GET"}:
        raise BenchError(f"the run sent {seen['methods']}: only GET is allowed")
    return result, {
        "api_calls": seen["requests"],
        "probe_calls": observed["calls"],
        "probe_s": observed["elapsed_s"],
        "pods_checked": pods,
        "paths": seen["paths"],
        "bundle_bytes": bundle_bytes,
    }


# -- the benchmark -------------------------------------------------------------------------


def bench(
    items: int, repeat: int, concurrency: int, keep: bool, namespaces: int, list_namespaces: bool
) -> dict[str, Any]:
    with harness.workdir(keep) as work, cluster(items, namespaces, work) as url:
        profile = work / "bench.yaml"
        write_profile(profile, work, namespaces, list_namespaces)
        raws: list[dict[str, Any]] = []

        def floor(index: int) -> Measure:
            raws.append(run_raw(work))
            stats(url, work, reset=True)
            return harness.run_floor(work, CHECK_COUNT, index)

        floors, runs, extras = harness.alternate(repeat, floor, lambda index: run_opsproof(work, profile, url, index))
    raw_s = statistics.median(r["wall_s"] for r in raws)
    setup = {
        "pods": items,
        "namespaces": namespaces,
        "namespaces_listed": list_namespaces,
        "checks": CHECK_COUNT,
        "repeat": repeat,
        "concurrency": concurrency,
        "page_size": PAGE_SIZE,
        "raw_lists_s": round(raw_s, 3),
        "raw_lists": raws,
        "api_calls": [e["api_calls"] for e in extras],
        "probe_s_median": round(statistics.median(e["probe_s"] for e in extras), 3),
    }
    return harness.figures(setup, floors, runs, extras, floor_extra_s=raw_s)


def print_table(figures: dict[str, Any]) -> None:
    harness.print_table(
        f"kubernetes benchmark: {figures['pods']} pods in {figures['namespaces']} namespaces "
        f"({figures['checks']} checks)",
        figures,
        extra_row="floor + raw list calls",
    )
    runs = figures["runs"]["opsproof"]
    print(f"API calls per run (counted by the emulator, every one a GET): {figures['api_calls']}")
    print(f"  per path: {runs[0]['paths']}")
    print(f"raw list calls alone (same lists, same client): {figures['raw_lists_s']:.2f} s")
    print(f"the probe of the item (connect, every list, the summaries): {figures['probe_s_median']:.2f} s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = harness.parser(__doc__, 5000, "pods (not items: one kubernetes item)")
    parser.add_argument("--namespaces", type=int, default=50, help="namespaces the pods are spread over (default 50)")
    parser.add_argument("--list-namespaces", action="store_true", help="name every namespace in the profile")
    parser.add_argument("--folder", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args(argv)
    if args.raw:
        raw_lists(args.folder)
        return 0
    return harness.main(
        parser,
        argv,
        lambda a: serve(a.items, a.namespaces, a.folder),
        lambda items, repeat, concurrency, keep: bench(
            items, repeat, concurrency, keep, args.namespaces, args.list_namespaces
        ),
        print_table,
    )


if __name__ == "__main__":
    sys.exit(main())
