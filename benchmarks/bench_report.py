"""Benchmark: report.html at 1,000 and 10,000 checks: its size, render time, and time to interactive in Chromium.

For each size, a results document of N typed check records (`CheckRecord`, shaped like the
records a real daily HTTP run writes: the same observed and expected keys, or replicated from
a real results.json with `--from-results`) with a realistic mix of outcomes (most passed, a
few blocking, failed below --fail-on, error, warned, waived, skipped) is rendered with
`render_html`, as the bundle writer does, and written to a temp folder. Then headless Chromium
(Debian's /usr/bin/chromium, driven over the DevTools protocol with aiohttp's websocket
client) opens, alternately, a blank page (the floor) and the report, `--repeat` times each.

Time to interactive: from `Page.navigate` until the load event has fired and the page's main
thread has run a frame and a task after it (`requestAnimationFrame` then `setTimeout 0`,
awaited from the protocol): a click on the page would be handled from then on. With it, the
CPU seconds the browser's processes used meanwhile (summed from /proc over its process
group): the machine these figures come from is shared, and wall time stretches with its
load while the CPU a page costs does not much. Reported:
the medians, the report's excess over the blank page (the figure the issue judges: <= 1 s
at 10,000 checks), and the report's size (<= 5 MiB). After the timed loads, one passed
check's row is clicked and the time until its facts are drawn is reported, with the page's
element count and JS heap (Performance.getMetrics).

Usage::

    .venv/bin/python benchmarks/bench_report.py                      # 1,000 and 10,000 checks, 5 loads each
    .venv/bin/python benchmarks/bench_report.py --items 10000 --repeat 7 --json /tmp/report.json
    .venv/bin/python benchmarks/bench_report.py --from-results reports/demo-.../results.json --keep
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

from opsproof.evidence.html import render_html
from opsproof.model.results import CheckRecord, Results
from opsproof.run.results import summarize
from opsproof.testing.servers import stop_process

SIZE_TARGET_MIB = 5.0
INTERACTIVE_TARGET_S = 1.0  # over the blank page's
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# (outcome, severity, share): 2% of the checks need attention, a few of them blocking (--fail-on high).
MIX = (
    ("failed", "critical", 0.002),
    ("failed", "medium", 0.006),
    ("error", "high", 0.001),
    ("warned", "medium", 0.01),
    ("waived", "high", 0.001),
    ("skipped", "low", 0.002),
)
STARTED = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


class BenchError(RuntimeError):
    """Chromium did not start, or a page did not load or answer."""


# -- the results --------------------------------------------------------------------------


def http_record(i: int, outcome: str, severity: str) -> dict[str, Any]:
    """One record as a daily HTTP run writes it (keys and values of a real `http.health` record)."""
    name = f"svc-{i:05d}"
    latency = 40 + (i * 37) % 160
    status = 503 if outcome in ("failed", "waived") else 200
    message = {
        "passed": f"HTTP 200 in {latency}ms",
        "warned": f"latency {latency + 100}ms is over the warn threshold 100ms",
        "failed": "HTTP 503 Service Unavailable, expected 200",
        "waived": "HTTP 503 Service Unavailable, expected 200",
        "error": f"cannot connect to 10.0.{i % 250}.{i % 200}:443: connection refused",
        "skipped": "not selected for this cadence",
    }[outcome]
    body = json.dumps({"status": "healthy" if status == 200 else "unavailable", "service": name})
    record: dict[str, Any] = {
        "id": f"checks/health/test_http.py::test_health[{name}]",
        "check": f"http.health[{name}]",
        "kind": "http",
        "target": name,
        "markers": ["daily", "health", "post_deploy"],
        "controls": ["SOC2:CC7.1", "SOC2:CC7.2", "SOC2:A1.1", "ISO27001:A.8.16", "SOX-ITGC:OPS"],
        "severity": severity,
        "outcome": outcome,
        "message": message,
        "observed": {
            "reached": outcome != "error",
            "timed_out": False,
            "elapsed_s": latency / 1000,
            "url": f"https://{name}.internal.example:8443/health",
            "status": status,
            "reason": "OK" if status == 200 else "Service Unavailable",
            "content_type": "application/json",
            "body_bytes": len(body),
            "body_truncated": False,
            "max_body": 10485760,
            "body_excerpt": body,
            "json": json.loads(body),
            "latency_ms": float(latency),
        },
        "expected": {"status": [200], "json": {"status": "healthy"}, "latency": {"warn": "100ms", "fail": "500ms"}},
        "started_at": (STARTED + timedelta(milliseconds=i * 7))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "duration_s": latency / 1000,
        "phase": "call",
    }
    if outcome == "waived":
        record["waiver"] = {
            "check": f"http.health[{name}]",
            "reason": "vendor outage",
            "ticket": f"OPS-{i}",
            "approved_by": "platform-lead",
            "expires": "2026-12-31",
            "status": "applied",
        }
    return record


def outcomes_for(items: int) -> list[tuple[str, str]]:
    """Each check's (outcome, severity): the MIX, spread over the run, the rest passed critical."""
    plan = [("passed", "critical")] * items
    slots = count(3, 7)  # every 7th slot from the 3rd: spread, deterministic
    for outcome, severity, share in MIX:
        for _ in range(max(1, round(items * share))):
            plan[next(slots) % items] = (outcome, severity)
    return plan


def results_of(items: int, template: list[dict[str, Any]] | None) -> Results:
    """A results document of `items` checks, typed (validated as results.json is read)."""
    checks: list[dict[str, Any]] = []
    for i, (outcome, severity) in enumerate(outcomes_for(items)):
        if template:
            record = json.loads(json.dumps(template[i % len(template)]))
            record["id"] += f"#{i}"
            record["check"] = f"{record['check']}#{i}"
        else:
            record = http_record(i, outcome, severity)
        checks.append(CheckRecord.model_validate(record).dump())
    summary = summarize(checks, "high", [])
    blocking = summary["blocking"]
    document = {
        "schema": "opsproof/results/v1",
        "run": {
            "id": "0447025021d54c339611bfb7268ebc02",
            "environment": "production",
            "profile": {
                "path": "/srv/opsproof/profiles/production.yaml",
                "sha256": "fda1621a085c90c8971f8a836cb2567ab4",
            },
            "started_at": "2026-11-24T06:00:00.000Z",
            "finished_at": "2026-11-24T06:01:12.345Z",
            "selection": {"markers": "daily", "keywords": None, "paths": []},
            "suite": {"version": "0.1.0", "commit": "466a6447a5c83d7203110d2857ce830f439734be"},
            "host": "ops-runner-1",
            "user": "opsproof",
            "command": "pytest -m daily --profile production",
            "status": "failed" if blocking else "passed",
            "exit_code": 1 if blocking else 0,
            "fail_on": "high",
            "vars": {},
            "change": None,
        },
        "checks": checks,
        "summary": summary,
    }
    return Results.model_validate(document)


# -- Chromium over the DevTools protocol ---------------------------------------------------


def group_cpu_s(group: int) -> float:
    """User + system CPU seconds of the live processes of process group `group` (the browser and its children)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[2]) == group:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@contextmanager
def chromium(work: Path) -> Iterator[tuple[str, int]]:
    """Headless Chromium with the DevTools protocol on a free port; its websocket URL and process group."""
    proc = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--remote-debugging-port=0",
            f"--user-data-dir={work / 'chromium-profile'}",
            "about:blank",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group: the CPU its renderers use can be summed
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            if found:
                yield found.group(1), proc.pid
                return
            if not line and proc.poll() is not None:
                break
        raise BenchError("chromium did not print its DevTools address within 30 s")
    finally:
        stop_process(proc)


class Page:
    """One tab, attached with a flat session: `call` a protocol method, `wait_for` an event."""

    def __init__(self, ws: Any, session: str) -> None:
        self.ws = ws
        self.session = session
        self.ids = count(1)
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def call(self, method: str, session: bool = True, **params: Any) -> Any:
        message_id = next(self.ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[message_id] = future
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        await self.ws.send_str(json.dumps(message))
        return await asyncio.wait_for(future, 120)

    async def wait_for(self, method: str) -> dict[str, Any]:
        while True:
            event = await asyncio.wait_for(self.events.get(), 120)
            if event.get("method") == method:
                return event

    async def pump(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw.data)
            if "id" in message and message["id"] in self.pending:
                future = self.pending.pop(message["id"])
                if "error" in message:
                    future.set_exception(BenchError(f"DevTools: {message['error']}"))
                else:
                    future.set_result(message.get("result"))
            elif "method" in message:
                self.events.put_nowait(message)

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise BenchError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def time_to_interactive(self, url: str, group: int) -> tuple[float, float]:
        """Seconds from navigating to `url` until it has loaded and its main thread answers after a frame.

        Also the CPU seconds the browser's processes used meanwhile: on a machine shared with other
        work, wall time stretches with the load; the CPU the page costs much less so.
        """
        while not self.events.empty():
            self.events.get_nowait()
        cpu = group_cpu_s(group)
        started = time.perf_counter()
        await self.call("Page.navigate", url=url)
        await self.wait_for("Page.loadEventFired")
        await self.evaluate("new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)))")
        return time.perf_counter() - started, group_cpu_s(group) - cpu


OPEN_A_PASSED_ROW = """
new Promise((resolve, reject) => {
  const row = document.querySelector('details.check.o-passed:not([open])');
  if (!row) { reject(new Error('no closed passed row')); return; }
  row.scrollIntoView();
  const started = performance.now();
  row.querySelector('summary').click();
  requestAnimationFrame(() => setTimeout(() => resolve({
    ms: performance.now() - started,
    facts: row.querySelectorAll('table.kv tr').length,
  }), 0));
})
"""


async def browse(browser: tuple[str, int], blank: Path, report: Path, repeat: int) -> dict[str, Any]:
    """Blank page and report, alternately, `repeat` times each; then one click on a passed row."""
    import aiohttp

    ws_url, group = browser
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, max_msg_size=0) as ws:
        page = Page(ws, "")
        pump = asyncio.create_task(page.pump())
        try:
            target = await page.call("Target.createTarget", session=False, url="about:blank")
            attached = await page.call(
                "Target.attachToTarget", session=False, targetId=target["targetId"], flatten=True
            )
            page.session = attached["sessionId"]
            await page.call("Page.enable")
            await page.call("Performance.enable")
            blanks: list[tuple[float, float]] = []
            reports: list[tuple[float, float]] = []
            for index in range(repeat):
                blanks.append(await page.time_to_interactive(blank.as_uri(), group))
                reports.append(await page.time_to_interactive(report.as_uri(), group))
                print(
                    f"  load {index + 1}/{repeat}: blank {blanks[-1][0]:.3f} s (cpu {blanks[-1][1]:.2f} s), "
                    f"report {reports[-1][0]:.3f} s (cpu {reports[-1][1]:.2f} s)",
                    file=sys.stderr,
                )
            metrics = {m["name"]: m["value"] for m in (await page.call("Performance.getMetrics"))["metrics"]}
            elements = await page.evaluate("document.getElementsByTagName('*').length")
            click = await page.evaluate(OPEN_A_PASSED_ROW)
        finally:
            pump.cancel()
    return {
        "blank_s": [wall for wall, _ in blanks],
        "report_s": [wall for wall, _ in reports],
        "blank_cpu_s": [cpu for _, cpu in blanks],
        "report_cpu_s": [cpu for _, cpu in reports],
        "elements": elements,
        "js_heap_mib": round(metrics.get("JSHeapUsedSize", 0) / 2**20, 1),
        "open_passed_row_ms": round(click["ms"], 1),
        "open_passed_row_facts": click["facts"],
    }


# -- one size --------------------------------------------------------------------------------


def measure(items: int, repeat: int, work: Path, template: list[dict[str, Any]] | None) -> dict[str, Any]:
    results = results_of(items, template)
    render_html(results)  # warm-up: template compilation and imports are not the page's cost
    started, cpu = time.perf_counter(), time.process_time()
    page = render_html(results)
    render_s, render_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    report = work / f"report-{items}.html"
    report.write_text(page, encoding="utf-8")
    blank = work / "blank.html"
    blank.write_text("<!doctype html><html><head><meta charset='utf-8'><title>blank</title></head><body></body></html>")
    size_mib = report.stat().st_size / 2**20
    print(f"{items} checks: report.html {size_mib:.2f} MiB, rendered in {render_s:.2f} s", file=sys.stderr)
    with chromium(work) as browser:
        browsed = asyncio.run(browse(browser, blank, report, repeat))
    blank_s = statistics.median(browsed["blank_s"])
    report_s = statistics.median(browsed["report_s"])
    return {
        "items": items,
        "by_outcome": results.summary.by_outcome,
        "size_mib": round(size_mib, 2),
        "render_s": round(render_s, 3),
        "render_cpu_s": round(render_cpu_s, 3),
        "blank_cpu_s_median": round(statistics.median(browsed["blank_cpu_s"]), 3),
        "report_cpu_s_median": round(statistics.median(browsed["report_cpu_s"]), 3),
        "blank_interactive_s": round(blank_s, 3),
        "report_interactive_s": round(report_s, 3),
        "over_blank_s": round(report_s - blank_s, 3),
        "size_ok": size_mib <= SIZE_TARGET_MIB,
        "interactive_ok": report_s - blank_s <= INTERACTIVE_TARGET_S,
        **browsed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--items", type=int, action="append", help="checks in the report (repeatable; default 1000 and 10000)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="loads of each page (the figures are medians)")
    parser.add_argument(
        "--from-results", type=Path, help="replicate this results.json's records instead of synthetic ones"
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder with the pages")
    args = parser.parse_args()
    template = json.loads(args.from_results.read_text())["checks"] if args.from_results else None
    work = Path(tempfile.mkdtemp(prefix="opsproof-bench-report-"))
    try:
        rows = [measure(items, args.repeat, work, template) for items in args.items or [1000, 10000]]
    except BenchError as problem:
        print(f"bench_report: {problem}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    verdict = {True: "PASS", False: "FAIL"}
    print(f"report.html in headless Chromium, median of {args.repeat} loads, {os.cpu_count()} CPUs")
    columns = ("checks", "report.html", "render (CPU)", "blank page", "report interactive", "over blank")
    print("| " + " | ".join((*columns, "browser CPU: blank / report", "elements", "open a passed row")) + " |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['items']:,} | {r['size_mib']:.2f} MiB | {r['render_s']:.2f} s ({r['render_cpu_s']:.2f} s) "
            f"| {r['blank_interactive_s']:.3f} s | {r['report_interactive_s']:.3f} s | {r['over_blank_s']:.3f} s "
            f"| {r['blank_cpu_s_median']:.2f} / {r['report_cpu_s_median']:.2f} s | {r['elements']:,} "
            f"| {r['open_passed_row_ms']} ms ({r['open_passed_row_facts']} facts) |"
        )
    for r in rows:
        print(
            f"{r['items']:,} checks: size <= {SIZE_TARGET_MIB} MiB {verdict[r['size_ok']]}; "
            f"interactive within {INTERACTIVE_TARGET_S} s of a blank page {verdict[r['interactive_ok']]}"
        )
    if args.json:
        setup = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "repeat": args.repeat}
        machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
        args.json.write_text(json.dumps({**setup, "machine": machine, "sizes": rows}, indent=2))
    return 0 if all(r["size_ok"] and r["interactive_ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
