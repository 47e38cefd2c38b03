"""A kind's probe process (`opsproof.run.gather.serve`): how its facts reach the parent, and its heap.

The facts travel as JSON lines, one write per turn of the probe process's event loop (a write per
facts woke the parent's reader once per target). The probes here run against the HTTP server the
tests start, in processes forked from this one.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import SECRET, HttpServer, Runner, http_profile
from opsproof.probes.http import HttpFacts
from opsproof.profile import load_profile
from opsproof.run import gather, warm
from opsproof.run.gather import FactsLines, Gatherer

# What two probes of one endpoint never share: when they ran and how long they took.
TIMING = {"probed_at", "elapsed_s", "latency_s", "latency_samples_ms"}


def _read_all(fd: int) -> bytes:
    with os.fdopen(fd, "rb") as out:
        return out.read()


def test_the_facts_done_in_one_turn_of_the_loop_leave_in_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    read_end, write_end = os.pipe()
    writes: list[int] = []
    write = os.write

    def counted(fd: int, data: Any) -> int:
        if fd == write_end:
            writes.append(len(data))
        return write(fd, data)

    monkeypatch.setattr(os, "write", counted)
    # Text a server may send: non-ASCII, a NaN Python's json reads in a body, nesting.
    facts = [
        HttpFacts(
            target=f"svc-{n}",
            url=f"http://h/{n}",
            reached=True,
            status=200,
            body_text="état ☃",
            json_body={"n": n, "x": [float("nan")]},
        )
        for n in range(50)
    ]
    lines = FactsLines(write_end)

    async def probing() -> None:
        for found in facts[:40]:  # done in the same turn: the answers one poll of the sockets brought
            lines.send("http", found)
        assert writes == []  # none while the turn goes on
        await asyncio.sleep(0)
        assert len(writes) == 1  # all 40 as soon as that turn ended, before this probe went on
        for found in facts[40:]:
            lines.send("http", found)
        await asyncio.sleep(0)
        assert len(writes) == 2

    asyncio.run(probing())
    lines.close()
    assert len(writes) == 2  # nothing left over for the close
    # Byte for byte the lines the parent has always parsed: one per facts, in the order they were done.
    expected = [json.dumps(["http", found.model_dump(mode="json")]) for found in facts]
    assert _read_all(read_end).decode().split("\n") == [*expected, ""]


def test_facts_sent_in_a_turn_that_is_the_last_still_reach_the_parent() -> None:
    read_end, write_end = os.pipe()
    lines = FactsLines(write_end)
    found = HttpFacts(target="last", url="http://h/", reached=False, failure="refused")

    async def last() -> None:
        lines.send("http", found)  # the loop ends before another turn

    asyncio.run(last())
    lines.close()
    assert json.loads(_read_all(read_end)) == ["http", found.model_dump(mode="json")]


def test_a_parent_that_is_gone_ends_the_probing_at_the_next_facts() -> None:
    """As when each facts was written at once: the probes stop (the process exits 1), nothing is logged per turn."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    lines = FactsLines(write_end)
    found = HttpFacts(target="a", url="http://h/", reached=False, failure="refused")
    sent = []

    async def probing() -> None:
        lines.send("http", found)
        await asyncio.sleep(0)  # the write fails here, in the loop's callback
        sent.append(1)
        lines.send("http", found)
        sent.append(2)

    with pytest.raises(BrokenPipeError):
        asyncio.run(probing())
    assert sent == [1]
    with pytest.raises(BrokenPipeError):
        lines.close()


def test_a_probe_process_sends_the_facts_the_probes_make_in_process(
    tmp_path: Path, http_server: HttpServer, closed_port: str
) -> None:
    """Every kind of answer through a forked probe process and through the probes in this one: the same facts."""
    base = http_server.base
    path = tmp_path / "p.yaml"
    path.write_text(
        http_profile(
            f"{{name: json, url: '{base}/health'}}",
            f"{{name: text, url: '{base}/text'}}",
            f"{{name: down, url: '{base}/status/503'}}",
            f"{{name: moved, url: '{base}/redirect'}}",
            f"{{name: big, url: '{base}/big'}}",
            f"{{name: refused, url: '{closed_port}'}}",
            f"{{name: echo, url: '{base}/echo/401/0', headers: {{Authorization: 'Bearer ${{PROBE_TOKEN}}'}}}}",
        )
    )
    loaded = load_profile(path, environ={"PROBE_TOKEN": SECRET})
    names = set(loaded.profile.targets("http"))

    def probed(in_child: bool) -> dict[str, dict[str, Any]]:
        gatherer = Gatherer(loaded.profile, in_child=in_child, redactor=loaded.redactor)
        try:
            gatherer.start({"http": names})
            facts = {name: gatherer.facts("http", name).model_dump() for name in names}
        finally:
            gatherer.stop()
        assert in_child == bool(gatherer._children)
        return {name: {k: v for k, v in found.items() if k not in TIMING} for name, found in facts.items()}

    through_a_process, in_process = probed(True), probed(False)
    assert through_a_process == in_process
    assert through_a_process["big"]["json_body"]["status"] == "complete"
    assert "${PROBE_TOKEN}" in through_a_process["echo"]["body_text"]
    assert SECRET not in json.dumps(through_a_process)


def test_a_probe_process_freezes_the_heap_it_starts_with(tmp_path: Path) -> None:
    """What exists when it starts (modules, the profile) lives as long as it does: no collection walks it again.

    And the young collections are rare: each walks the probes in flight (~60 passes per 1,000 HTTP probes before).
    But they happen: a probe process forked while the run's start pauses the collector turns it back on.
    """
    path = tmp_path / "p.yaml"
    path.write_text(http_profile("{name: a, url: 'http://127.0.0.1:9/'}"))
    gatherer = Gatherer(load_profile(path).profile)
    report_read, report_write = os.pipe()
    request_read, request_write = os.pipe()
    result_read, result_write = os.pipe()
    os.close(request_write)  # nothing to probe
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        status = 1
        try:
            gc.disable()  # as a run's probe process inherits it: forked while the run's start pauses the collector
            before = gc.get_freeze_count()
            collectable = sum(len(gc.get_objects(generation)) for generation in range(3))
            status = gather.serve(gatherer, "http", request_read, result_write)
            report = [before, collectable, gc.get_freeze_count(), gc.get_threshold()[0], gc.isenabled()]
            os.write(report_write, json.dumps(report).encode())
        finally:
            os._exit(status)
    os.close(report_write)
    os.close(result_write)
    assert _read_all(result_read) == b""
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    before, collectable, after, young_threshold, collecting = json.loads(_read_all(report_read))
    assert after - before >= 0.9 * collectable, (before, collectable, after)  # a few were freed before the freeze
    assert young_threshold >= 10 * 700  # Python's default: 700 new objects
    assert collecting  # cycles are collected while it probes, whatever the parent's collector was doing


def test_a_probe_process_imports_its_libraries_with_no_trust_store_for_a_context_that_verifies_nothing() -> None:
    """aiohttp's two contexts, made at import: the verifying one with the system's CAs, the other (verify_tls: false) without.

    `metrics` imports aiohttp in its probe process; `http` no longer does (its lean client, test_http_wire.py).
    """
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "import ssl; from opsproof.probes import import_libraries, kind_named; import_libraries(kind_named('metrics'));"
            "from aiohttp import connector;"
            "print(connector._SSL_CONTEXT_VERIFIED.cert_store_stats()['x509_ca'],"
            " connector._SSL_CONTEXT_UNVERIFIED.cert_store_stats()['x509_ca'],"
            " connector._SSL_CONTEXT_UNVERIFIED.verify_mode == ssl.CERT_NONE,"
            " 'set_default_verify_paths' in vars(ssl.SSLContext))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    verifying_cas, unverifying_cas, verifies_nothing, still_patched = shown
    assert int(verifying_cas) > 0 and (unverifying_cas, verifies_nothing, still_patched) == ("0", "True", "False")



def test_a_probe_process_reads_its_work_in_its_event_loop_however_many_writes_it_takes() -> None:
    """The parent's list of targets, read by the loop itself: a thread's blocking read (the loop's default
    executor, and its module's import) was ~1 ms of a just-forked process's CPU before its first request."""
    read_end, write_end = os.pipe()
    data = json.dumps([f"svc-{n:06d}" for n in range(30_000)]).encode()  # ~390 KB: a pipe holds 64 KiB

    def parent() -> None:
        with os.fdopen(write_end, "wb") as out:
            for start in range(0, len(data), 50_000):
                out.write(data[start : start + 50_000])
                out.flush()
                time.sleep(0.01)

    async def child() -> tuple[bytes, list[str]]:
        read = await gather._read_to_end(read_end)
        return read, [thread.name for thread in threading.enumerate() if thread.name.startswith("asyncio")]

    writer = threading.Thread(target=parent)
    writer.start()
    read, executor_threads = asyncio.run(child())
    writer.join()
    assert read == data
    assert executor_threads == []
    with pytest.raises(OSError):
        os.fstat(read_end)  # closed once read


def test_a_probe_process_arms_its_death_with_the_run_while_its_first_request_is_in_flight(
    tmp_path: Path, http_server: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`warm.die_with` (SIGKILL when the run dies; its ctypes import ~4 ms of a forked process's CPU) is armed
    `DIE_WITH_AFTER_S` into the probing, after the first request has left, not between the fork and it."""
    path = tmp_path / "p.yaml"
    path.write_text(http_profile(f"{{name: slow, url: '{http_server.base}/slow/400'}}"))
    report_read, report_write = os.pipe()

    def armed(parent: int) -> None:  # in the probe process
        os.write(report_write, json.dumps([parent, time.time()]).encode())

    monkeypatch.setattr(warm, "die_with", armed)
    gatherer = Gatherer(load_profile(path).profile)
    try:
        gatherer.prepare(early={"http": {"slow"}}).start({"http": {"slow"}})
        facts = gatherer.facts("http", "slow")
    finally:
        gatherer.stop()
    os.close(report_write)
    parent, armed_at = json.loads(_read_all(report_read))
    answered = datetime.fromisoformat(facts.probed_at.replace("Z", "+00:00")).timestamp()
    assert facts.reached and facts.elapsed_s >= 0.4
    assert parent == os.getpid()
    # The request left before (its answer came 400 ms later), and the arming came well before that answer.
    assert answered - facts.elapsed_s < armed_at < answered - 0.2, (answered - facts.elapsed_s, armed_at, answered)


KILL_THE_PROBE_PROCESS = """
import contextlib
import os
import signal

from opsproof.run import gather

_prepare = gather.Gatherer.prepare


def prepare(self, *args, **kwargs):
    # As the kernel's out-of-memory killer would: SIGKILL, before the probe process has sent a line.
    prepared = _prepare(self, *args, **kwargs)
    for child in self._children.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)
    return prepared


gather.Gatherer.prepare = prepare
"""


def test_a_probe_process_killed_leaves_each_check_an_error_that_says_so_and_costs_no_traceback(
    runner: Runner, http_server: HttpServer
) -> None:
    """A real run whose http probe process is SIGKILLed (an OOM kill, staged): each check is an `error`
    naming the signal, pytest shows each by its message (formatting a traceback through opsproof's
    frames cost ~12 ms a check: 20 s for 1,000 of them), and the run ends with exit 1 and a bundle."""
    items = [f"{{name: svc-{n:03d}, url: '{http_server.base}/health?n={n}'}}" for n in range(60)]
    runner.profile(http_profile(*items))
    (runner.pytester.path / "conftest.py").write_text(KILL_THE_PROBE_PROCESS)
    run = runner.run("-m", "daily", subprocess=True)
    assert run.ret == 1, run.output
    outcomes = run.outcomes("http.health")
    assert len(outcomes) == 60
    for check, (outcome, message) in outcomes.items():
        name = check.removeprefix("http.health[").removesuffix("]")
        assert outcome == "error"
        assert message == (
            f"the http probe process was killed by SIGKILL (the out-of-memory killer's signal: see dmesg) "
            f"before it probed {name!r}"
        )
    assert run.output.count("All traceback entries are hidden") == 60
    assert "gather.py" not in run.output and "plugin.py" not in run.output
