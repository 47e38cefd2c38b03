"""A pytest plugin that holds the demo's run at its start until the demo's services have settled.

`opsproof demo` starts pytest while Prometheus still waits for its first round of target
discovery (5 s after it starts, whatever its configuration): pytest's own start-up, its
imports and its plugins, overlap that wait instead of following it. The demo loads this
plugin through PYTEST_PLUGINS (so the command it shows, and the bundle records, is the
user's own) and hands it the read end of a pipe in $OPSPROOF_DEMO_GATE: the run goes on
when "go" arrives. End of file without it (the demo failed to start, or was stopped)
ends the run before anything was probed.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import select
import time
from collections.abc import Generator

import pytest

GATE_VARIABLE = "OPSPROOF_DEMO_GATE"
MARKS_VARIABLE = "OPSPROOF_DEMO_MARKS"  # a file: "<wall time> <what>" lines for the demo's --timeline
GO = b"go"
_marks: dict[str, str] = {}


def _mark(what: str) -> None:
    path = _marks.get("path")
    if path is not None:
        with open(path, "a", encoding="utf-8") as out:
            out.write(f"{time.time():.6f} pytest: {what}\n")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # Before opsproof's plugin configures: it forks the probe processes, which may probe at
    # once, and a probe of the demo's Prometheus must come after Prometheus settled.
    fd = os.environ.pop(GATE_VARIABLE, None)
    marks = os.environ.pop(MARKS_VARIABLE, None)
    if marks is not None:
        _marks["path"] = marks
    if fd is not None:
        _mark("at the gate")
        done, total = _warm_up(int(fd))
        _mark(f"imported {done} of {total} modules the run needs, while held")
        said = _read_to_end(int(fd))
        if said != GO:
            pytest.exit("opsproof demo: the demo services did not start; nothing was checked", returncode=2)


def pytest_collection_finish(session: pytest.Session) -> None:
    _mark(f"collected {len(session.items)} checks")


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    _mark("the checks start")
    try:
        return (yield)
    finally:
        _mark("every check done; the bundle is written next")


def _warm_up(fd: int) -> tuple[int, int]:
    """While held, import what the run imports once let go: the probes' libraries, the bundle's writers.

    The probe processes are forked from this one, so they find them loaded; imported there,
    they would take their time after Prometheus settled (kubernetes' client alone ~0.4 s).
    Only while the gate is shut: once it opens, the probe processes import the rest side by
    side, which is quicker than one after another here. Not from a thread beside the wait:
    a fork while another thread imports can deadlock. Returns how many were imported, of how many.
    """
    from opsproof.probes import kinds

    modules = ["opsproof.run.recorder", "opsproof.evidence.bundle", "opsproof.run.results", "opsproof.run.terminal"]
    modules += [module for kind in kinds().values() for module in kind.imports]
    for done, module in enumerate(modules):
        if select.select([fd], [], [], 0)[0]:  # "go" (or the end) has come
            return done, len(modules)
        with contextlib.suppress(ImportError):  # a kind's optional library: its probes say so, not the gate
            importlib.import_module(module)
    return len(modules), len(modules)


def _read_to_end(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 64):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)
