"""Whole bodies are judged (issue 13 item 11): never the first packet of an answer, never a part past the cap.

Real servers: an aiohttp app that sends its body in pieces with pauses between them (as a
proxy or a slow backend does), and a real prometheus with 2,000 scrape targets.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from helpers.prometheus_servers import Exporter, exporter, prom_profile, run_prometheus

from conftest import Runner, http_profile, wait_for
from opsproof.testing.servers import free_port, serving

__all__ = ["exporter"]  # the session fixture, imported so pytest finds it

BIG_JSON = {
    "status": "healthy",
    "checks": {f"component-{n:05d}": {"state": "ok", "pad": "x" * 60} for n in range(2600)},
}


async def _in_pieces(request: web.Request, pieces: list[bytes], content_type: str) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": content_type})
    await response.prepare(request)
    try:
        for piece in pieces:
            await response.write(piece)
            await asyncio.sleep(0.05)  # each piece in its own packet: a one-read probe sees only the first
        await response.write_eof()
    except ConnectionResetError:
        pass  # the probe stopped reading at its cap and hung up, as it should
    return response


@pytest.fixture(scope="module")
def pieces_server() -> Iterator[str]:
    async def status_then_error(request: web.Request) -> web.StreamResponse:
        return await _in_pieces(request, [b"status: ok", b" -- ERROR: database unreachable"], "text/plain")

    async def big_json(request: web.Request) -> web.StreamResponse:
        body = json.dumps(BIG_JSON).encode()
        chunks = [body[i : i + 16384] for i in range(0, len(body), 16384)]
        return await _in_pieces(request, chunks, "application/json")

    app = web.Application()
    app.router.add_get("/status", status_then_error)
    app.router.add_get("/big.json", big_json)
    with serving(free_port(0), app) as address:
        yield f"http://{address}"


def test_a_healthy_first_piece_does_not_hide_the_error_after_it(runner: Runner, pieces_server: str) -> None:
    runner.profile(http_profile(f"{{name: api, url: '{pieces_server}/status', expect: {{body: '^status: ok$'}}}}"))
    run = runner.run("-m", "daily")
    record = run.record("http.health[api]")
    assert record["outcome"] == "failed", run.output
    assert record["message"] == "body does not match /^status: ok$/"
    assert record["observed"]["body_excerpt"] == "status: ok -- ERROR: database unreachable"


def test_a_200_kb_json_body_is_read_whole_and_passes(runner: Runner, pieces_server: str) -> None:
    assert len(json.dumps(BIG_JSON)) > 200_000
    runner.profile(
        http_profile(f"{{name: api, url: '{pieces_server}/big.json', expect: {{json: {{status: healthy}}}}}}")
    )
    run = runner.run("-m", "daily")
    record = run.record("http.health[api]")
    assert record["outcome"] == "passed", run.output
    assert record["observed"]["body_bytes"] == len(json.dumps(BIG_JSON))


def test_a_body_past_max_body_fails_naming_the_cap(runner: Runner, pieces_server: str) -> None:
    runner.profile(
        http_profile(
            f"{{name: api, url: '{pieces_server}/big.json', max_body: 100KB, expect: {{json: {{status: healthy}}}}}}"
        )
    )
    run = runner.run("-m", "daily")
    record = run.record("http.health[api]")
    assert record["outcome"] == "failed", run.output
    assert record["message"].startswith("the body is larger than max_body 100.0KB: it was not judged")
    assert record["observed"]["body_truncated"] is True


def test_a_prometheus_with_2000_targets_is_read_whole(runner: Runner, exporter: Exporter, tmp_path: Path) -> None:
    many = [{"targets": [exporter.address], "labels": {"replica": str(n)}} for n in range(2000)]
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": "app", "static_configs": [{"targets": [exporter.address]}]},
            # Scraped once an hour: 2,000 targets in the answer, not 2,000 scrapes a second.
            {"job_name": "many", "scrape_interval": "1h", "static_configs": many},
        ],
    }
    with run_prometheus(tmp_path / "prom", config) as server:

        def targets_answer() -> bytes:
            with urllib.request.urlopen(f"{server.url}/api/v1/targets?state=active", timeout=5) as answer:
                return bytes(answer.read())

        def ready() -> bool:
            try:
                active = json.loads(targets_answer())["data"]["activeTargets"]
            except OSError:  # 503 while prometheus starts
                return False
            return len(active) == 2001 and any(t["labels"]["job"] == "app" and t["health"] == "up" for t in active)

        wait_for(ready, "2,001 targets, the app's scraped", timeout=60)
        assert len(targets_answer()) > 400_000
        runner.profile(
            prom_profile(f"{{name: big, url: '{server.url}', alerts: false, targets: {{ignore_jobs: [many]}}}}")
        )
        run = runner.run("-m", "daily")
    record = run.record("prometheus.targets[big]")
    assert (record["outcome"], record["message"]) == ("passed", "1 of 1 active targets up (1 jobs)"), run.output
    assert record["observed"]["ignored_jobs"] == ["many"]
