"""How a probe process schedules its probes (`opsproof.probes.each_as_done`): started a slice per
turn of the event loop, so answers are read while later probes still start, every deadline kept."""

from __future__ import annotations

import asyncio
import inspect
import time
from pathlib import Path

from conftest import http_profile
from opsproof.probes import RAMP, Facts, each_as_done
from opsproof.profile import load_profile
from opsproof.run.gather import Gatherer


async def _probe(n: int, started: list[int]) -> int:
    started.append(n)
    await asyncio.sleep(0)  # one turn of the loop: an answer that is already in
    return n


def test_answers_are_read_while_later_probes_still_start() -> None:
    """Started all at once, 1,000 HTTP probes opened every connection before the first answer was read."""
    started: list[int] = []

    async def main() -> list[tuple[int, int]]:
        return [(n, len(started)) async for n in each_as_done(_probe(n, started) for n in range(10 * RAMP))]

    done = asyncio.run(main())
    assert sorted(n for n, _ in done) == list(range(10 * RAMP))  # every probe, once
    _, started_by_then = done[0]
    # An answer in reaches the consumer three turns later (done, queued, awaited): three slices by then, not all ten.
    assert started_by_then <= 3 * RAMP, f"the first answer waited for {started_by_then} probes to start"
    assert started == list(range(10 * RAMP))  # in the profile's order


def test_a_consumer_that_stops_leaves_no_probe_running_and_none_unawaited() -> None:
    started: list[int] = []
    probes = [_probe(n, started) for n in range(10 * RAMP)]

    async def main() -> None:
        answers = each_as_done(iter(probes))
        async for _ in answers:
            break
        await answers.aclose()

    asyncio.run(main())
    assert len(started) < len(probes)  # it stopped while probes were still to start
    assert {inspect.getcoroutinestate(probe) for probe in probes} == {inspect.CORO_CLOSED}


def test_an_answer_starved_run_still_meets_every_deadline(tmp_path: Path, black_hole: str) -> None:
    """300 probes at once against a port that never answers (its backlog full after 64): each ends at its timeout."""
    items = [f"{{name: hole-{n}, url: '{black_hole}?{n}', timeout: 1s}}" for n in range(300)]
    path = tmp_path / "p.yaml"
    path.write_text(
        http_profile(*items).replace("defaults: {timeout: 2s}", "defaults: {timeout: 2s, concurrency: 300}")
    )
    gatherer = Gatherer(load_profile(path).profile, in_child=False)
    facts: list[Facts] = []
    started = time.monotonic()
    asyncio.run(gatherer._probe_all({"http": {f"hole-{n}" for n in range(300)}}, lambda _, found: facts.append(found)))
    took = time.monotonic() - started
    assert len(facts) == 300 and all(found.timed_out and not found.reached for found in facts)
    assert all("(timeout 1s)" in (found.failure or "") for found in facts)
    assert took < 10, f"300 probes with a 1 s deadline took {took:.1f} s"
