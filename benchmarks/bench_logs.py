"""Benchmark: 500 log pattern checks over the pod logs of 50 pods.

Target (issue 14): the logs are read with one pod list per namespace and one log read per
pod, not one per pattern; report the API calls and the ratio of the run to the pytest floor.
The cluster is the API emulator of `opsproof.testing.kubernetes` (HTTPS, bearer token) in a
process of its own: 50 pods in 5 namespaces, each with a log of `--lines` lines in the last
hour (a few of them "event-NNN failed" lines every pattern looks for). The profile has one
`logs` item per namespace (its pods by a label selector) with 100 patterns each: 500 checks.

The floor is pytest running as many trivial tests as the run has checks (harness.run_floor),
measured in the same session and alternated with the opsproof runs. The API calls are
counted by the emulator.

Usage, from anywhere (the opsproof run's cwd is the repository root)::

    /work/venv/bin/python benchmarks/bench_logs.py [--items 50] [--namespaces 5] [--patterns 100] [--repeat 3]

Exit status 0 when both targets are met (ratio <= 1.5, peak RSS <= 300 MiB), 1 when one is
missed, 2 when a run itself went wrong.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import harness
from bench_kubernetes import TOKEN, cluster, serve_counted, stats
from harness import BenchError, Measure

LIMIT_BYTES = "1MB"


def serve(pods: int, namespaces: int, lines: int, folder: Path) -> None:
    """Serve 50 pods with logs over HTTPS (see bench_kubernetes.serve_counted)."""
    from opsproof.testing.kube_objects import namespace, pod
    from opsproof.testing.kubernetes import KubeApiEmulator

    api = KubeApiEmulator(token=TOKEN)
    per_namespace = math.ceil(pods / namespaces)
    made = 0
    for n in range(namespaces):
        ns = f"team-{n:02d}"
        api.add(namespace(ns))
        for index in range(min(per_namespace, pods - made)):
            name = f"api-7d4b9-{index:05x}"
            api.add(pod(ns, name, labels={"app": "api"}))
            log = [
                (3000.0 - i, f"2026-12-05 INFO request {i} GET /v1/items/{i} 200 in {i % 97}ms user=u{i % 13}")
                for i in range(lines)
            ]
            log += [(1200.0 - i, f"ERROR event-{i:03d} failed: upstream reset") for i in range(0, 100, 7)]
            api.add_log(ns, name, "api", log)
            made += 1
    serve_counted(api, folder)


def write_profile(path: Path, folder: Path, namespaces: int, patterns: int) -> None:
    listed = ", ".join(
        f"{{name: p{k:03d}, match: 'event-{k:03d} failed', threshold: {{warn: 50, fail: 100}}}}"
        for k in range(patterns)
    )
    kubeconfig = folder / "kubeconfig"
    items = "".join(
        f"  - {{name: team-{n:02d}, within: 1h, limit_bytes: {LIMIT_BYTES}, kubernetes: "
        f"{{kubeconfig: '{kubeconfig}', namespace: team-{n:02d}, selector: app=api}}, patterns: [{listed}]}}\n"
        for n in range(namespaces)
    )
    path.write_text(f"environment: bench\ndefaults: {{timeout: 30s}}\nlogs:\n{items}")


def run_opsproof(work: Path, profile: Path, url: str, index: int, checks: int) -> tuple[Measure, dict[str, Any]]:
    stats(url, work, reset=True)
    result, results, bundle_bytes = harness.run_daily(work, profile, index)
    seen = stats(url, work, reset=True)
    records = harness.all_passed(results, checks)
    if set(seen["methods"]) != {"GET"}:
        raise BenchError(f"the run sent {seen['methods']}: only GET is allowed")
    reads = sum(count for path, count in seen["paths"].items() if path.endswith("/log"))
    lists = sum(count for path, count in seen["paths"].items() if path.endswith("/pods"))
    items = {r["target"]: r["observed"] for r in records}
    return result, {
        "api_calls": seen["requests"],
        "pod_lists": lists,
        "log_reads": reads,
        "lines_read": sum(o["lines"] for o in items.values()),
        "probe_s_max": max(o["elapsed_s"] for o in items.values()),
        "bundle_bytes": bundle_bytes,
    }


def bench(
    pods: int, repeat: int, concurrency: int, keep: bool, namespaces: int, patterns: int, lines: int
) -> dict[str, Any]:
    checks = namespaces * patterns
    script = str(Path(__file__).resolve())
    with harness.workdir(keep) as work, cluster(pods, namespaces, work, script, ["--lines", str(lines)]) as url:
        profile = work / "bench.yaml"
        write_profile(profile, work, namespaces, patterns)
        floors, runs, extras = harness.alternate(
            repeat,
            lambda index: harness.run_floor(work, checks, index),
            lambda index: run_opsproof(work, profile, url, index, checks),
        )
    if any(e["log_reads"] != pods or e["pod_lists"] != namespaces for e in extras):
        raise BenchError(f"expected {namespaces} pod lists and {pods} log reads per run: {extras}")
    setup = {
        "pods": pods,
        "namespaces": namespaces,
        "patterns_per_item": patterns,
        "checks": checks,
        "lines_per_pod": lines,
        "repeat": repeat,
        "concurrency": concurrency,
        "api_calls": [e["api_calls"] for e in extras],
        "pod_lists": [e["pod_lists"] for e in extras],
        "log_reads": [e["log_reads"] for e in extras],
        "probe_s_max_median": round(statistics.median(e["probe_s_max"] for e in extras), 3),
    }
    return harness.figures(setup, floors, runs, extras, floor_extra_s=0.0)


def print_table(figures: dict[str, Any]) -> None:
    harness.print_table(
        f"logs benchmark: {figures['checks']} pattern checks over {figures['pods']} pods "
        f"in {figures['namespaces']} namespaces ({figures['lines_per_pod']} lines each)",
        figures,
        extra_row=None,
    )
    print(f"API calls per run (counted by the emulator, every one a GET): {figures['api_calls']}")
    print(f"  pod lists {figures['pod_lists']}, log reads {figures['log_reads']}")
    print(f"the slowest item's read and count: {figures['probe_s_max_median']:.2f} s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = harness.parser(__doc__, 50, "pods (not items: one logs item per namespace)")
    parser.add_argument("--namespaces", type=int, default=5, help="namespaces the pods are spread over (default 5)")
    parser.add_argument("--patterns", type=int, default=100, help="patterns per item (default 100)")
    parser.add_argument("--lines", type=int, default=300, help="log lines per pod in the window (default 300)")
    parser.add_argument("--folder", type=Path, default=None, help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args(argv)
    return harness.main(
        parser,
        argv,
        lambda a: serve(a.items, a.namespaces, args.lines, a.folder),
        lambda items, repeat, concurrency, keep: bench(
            items, repeat, concurrency, keep, args.namespaces, args.patterns, args.lines
        ),
        print_table,
    )


if __name__ == "__main__":
    sys.exit(main())
