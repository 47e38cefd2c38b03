"""A pytest plugin that prints when each phase of an opsproof run happens (for benchmarks only).

    OPSPROOF_T0=$(date +%s.%N) PYTHONPATH=benchmarks .venv/bin/python -m pytest -p timeline -q -m daily ...

Each line on stderr is `timeline <seconds since OPSPROOF_T0, else the process start> <event>`;
the probe processes print theirs too (their first request, first and last facts sent).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import pytest


def _t0() -> float:
    if "OPSPROOF_T0" in os.environ:
        return float(os.environ["OPSPROOF_T0"])
    with open("/proc/self/stat") as stat:
        started_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/stat") as system:
        boot = next(int(line.split()[1]) for line in system if line.startswith("btime"))
    return boot + started_ticks / os.sysconf("SC_CLK_TCK")


T0 = _t0()
# pytest's global capture replaces fd 2 during conftest loading: a copy of the original reaches the terminal.
_OUT = os.dup(2)
_seen: set[str] = set()


def mark(event: str, once: bool = False) -> None:
    if once:
        if event in _seen:
            return
        _seen.add(event)
    cpu = time.process_time()
    os.write(_OUT, f"timeline {time.time() - T0:7.3f} [{os.getpid()}] cpu {cpu:6.3f}  {event}\n".encode())


mark("timeline plugin imported")
_last: dict[str, float] = {}


def _patch_gather() -> None:
    gather = sys.modules.get("opsproof.run.gather")  # a bare pytest (the floor) imports nothing of opsproof's
    if gather is None:
        return

    prepare, received, child_work, probe_in_child = (
        gather.Gatherer.prepare,
        gather.Gatherer._received,
        gather._child_work,
        gather._probe_in_child,
    )

    def timed_prepare(self: Any, *args: Any, **kwargs: Any) -> Any:
        mark("parent: prepare (fork probe processes) begins")
        try:
            return prepare(self, *args, **kwargs)
        finally:
            mark("parent: prepare ends")

    def timed_received(self: Any, line: bytes) -> None:
        mark("parent: first facts received", once=True)
        received(self, line)
        _last["facts"] = time.time()

    async def timed_child_work(g: Any, kind: str, request_read: int, send: Any) -> None:
        mark(f"child {kind}: libraries imported, event loop running")
        sent = 0

        def timed_send(kind: str, facts: Any) -> None:
            nonlocal sent
            sent += 1
            if sent == 1:
                mark(f"child {kind}: first facts sent")
            send(kind, facts)

        await child_work(g, kind, request_read, timed_send)
        mark(f"child {kind}: last facts sent ({sent})")

    def timed_probe_in_child(*args: Any, **kwargs: Any) -> Any:
        mark(f"child {args[1]}: forked")
        _time_the_first_request()
        return probe_in_child(*args, **kwargs)

    warm = sys.modules["opsproof.run.warm"]
    warm_main, warm_probe = warm._main, warm._probe

    def timed_warm_main(*args: Any) -> Any:
        mark(f"child {args[0]}: forked (warm, before the profile is loaded)")
        _time_the_first_request()
        return warm_main(*args)

    def timed_warm_probe(*args: Any) -> Any:
        mark(f"child {args[0]}: the run's state received")
        return warm_probe(*args)

    warm._main, warm._probe = timed_warm_main, timed_warm_probe
    gather.Gatherer.prepare = timed_prepare  # type: ignore[method-assign]
    gather.Gatherer._received = timed_received  # type: ignore[method-assign]
    gather._child_work = timed_child_work  # type: ignore[assignment]
    gather._probe_in_child = timed_probe_in_child  # type: ignore[assignment]


def _time_the_first_request() -> None:
    http = sys.modules.get("opsproof.probes.http")  # imported by the parent before it forks
    if http is None:
        return
    timed = http._timed  # one request, whichever client makes it

    async def timed_exchange(*args: Any) -> Any:
        mark("child http: first request sent", once=True)
        return await timed(*args)

    http._timed = timed_exchange


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_load_initial_conftests() -> Any:
    # A wrapper: before opsproof's own, which forks the warm probe processes.
    mark("pytest_load_initial_conftests")
    _patch_gather()
    return (yield)


@pytest.hookimpl(tryfirst=True)
def pytest_configure() -> None:
    mark("pytest_configure begins (profile load next)")


@pytest.hookimpl(trylast=True)
def pytest_sessionstart() -> None:
    mark("pytest_sessionstart (every configure done)")


@pytest.hookimpl(wrapper=True)
def pytest_collection() -> Any:
    mark("collection begins")
    try:
        return (yield)
    finally:
        mark("collection ends")


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop() -> None:
    # After opsproof's own (registered later, called first), which loads the bundle's writers.
    mark("test loop begins (the bundle's writers loaded)")
    _time_the_bundle()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call() -> None:
    mark("first check's call", once=True)


def pytest_runtest_logfinish() -> None:
    _last["check"], _last["check cpu"] = time.time(), time.process_time()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish() -> Any:
    def at(key: str) -> str:
        return f"{_last[key] - T0:7.3f}" if key in _last else "      -"

    os.write(_OUT, f"timeline {at('facts')} [{os.getpid()}] parent: last facts received\n".encode())
    cpu = f"cpu {_last['check cpu']:6.3f}  " if "check cpu" in _last else ""
    os.write(_OUT, f"timeline {at('check')} [{os.getpid()}] {cpu}last check ends\n".encode())
    mark("sessionfinish begins (bundle)")
    try:
        return (yield)
    finally:
        mark("sessionfinish ends")


def pytest_unconfigure() -> None:
    mark("unconfigure")


def _timed(module: Any, name: str, label: str) -> None:
    """Wrap `module.name` so each call prints its own line: `label took N ms`."""
    function = getattr(module, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        started, cpu = time.perf_counter(), time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            took, used = time.perf_counter() - started, time.process_time() - cpu
            os.write(
                _OUT,
                f"timeline {time.time() - T0:7.3f} [{os.getpid()}] {label}: {took * 1000:.0f} ms "
                f"({used * 1000:.0f} ms CPU)\n".encode(),
            )

    setattr(module, name, timed)


def _time_the_bundle() -> None:
    """The bundle's parts, each timed."""
    bundle = sys.modules.get("opsproof.evidence.bundle")
    if bundle is None:
        return
    for name in list(bundle.RENDERERS):
        render = bundle.RENDERERS[name]
        bundle.RENDERERS[name] = lambda results, premade, render=render, name=name: _materialized(
            render, results, premade, name
        )
    recorder = sys.modules["opsproof.run.recorder"]
    _timed(recorder, "ship_bundle", "  bundle: history (and upload)")
    _timed(bundle, "seal", "  bundle: manifest and seal")
    results = sys.modules["opsproof.run.results"]
    _timed(results, "build_results", "  bundle: results document")
    early = sys.modules["opsproof.run.early_recording"]
    _timed(early.EarlyRecording, "begin", "  bundle: the history's rows (before the seal)")


def _materialized(render: Any, results: Any, premade: Any, name: str) -> list[str]:
    started, cpu = time.perf_counter(), time.process_time()
    chunks = list(render(results, premade))
    took, used = time.perf_counter() - started, time.process_time() - cpu
    os.write(
        _OUT,
        f"timeline {time.time() - T0:7.3f} [{os.getpid()}]   bundle: {name} rendered: {took * 1000:.0f} ms "
        f"({used * 1000:.0f} ms CPU)\n".encode(),
    )
    return chunks
