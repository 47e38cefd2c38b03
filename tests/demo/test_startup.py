"""Starting the demo's services side by side (`opsproof.demo.startup`): all stop, whatever happens."""

from __future__ import annotations

import socket
import time
from contextlib import ExitStack

import pytest

from opsproof.demo.dns import DEMO_ZONE, serving_dns
from opsproof.demo.startup import Timeline, start_together
from opsproof.local.redis import local_redis


def _listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.socket() as probe:
        return probe.connect_ex((host, int(port))) == 0


def test_services_start_side_by_side_and_stop_when_the_block_ends() -> None:
    timeline = Timeline()

    def slow(own: ExitStack) -> str:
        time.sleep(0.5)
        return "slow"

    with ExitStack() as stack:
        started = time.monotonic()
        ready = start_together(
            stack,
            {
                "redis": lambda own: own.enter_context(local_redis({}, password="x")),
                "first slow": slow,
                "second slow": slow,
            },
            timeline,
        )
        elapsed = time.monotonic() - started
        redis = ready["redis"]
        assert redis.process.poll() is None
    assert elapsed < 1.0, "the two half-second tasks ran side by side"
    assert {what for _, what in timeline.marks} == {"redis ready", "first slow ready", "second slow ready"}
    assert redis.process.poll() is not None, "the block's end stopped redis"


def test_a_task_that_fails_stops_the_ones_that_started() -> None:
    addresses: list[str] = []

    def dns(own: ExitStack) -> str:
        server = own.enter_context(serving_dns(DEMO_ZONE))
        addresses.append(server.address)
        return server.address

    def broken(own: ExitStack) -> None:
        time.sleep(0.3)  # after the DNS server is up
        raise RuntimeError("this service does not start")

    stack = ExitStack()
    with pytest.raises(RuntimeError, match="this service does not start"):
        start_together(stack, {"dns": dns, "broken": broken}, Timeline())
    assert addresses, "the DNS server had started"
    assert not _listening(addresses[0]), "the DNS server (TCP side) was stopped"
    stack.close()  # nothing was handed to it


def test_the_timeline_orders_marks_and_takes_wall_clock_moments() -> None:
    timeline = Timeline()
    timeline.mark_wall("written by another process", timeline.began_wall + 2.0)
    timeline.mark("now")
    lines = timeline.lines()
    assert lines[0].endswith("s  now")
    assert lines[1] == "  2.00 s  written by another process"


def test_the_timeline_knows_when_its_process_started() -> None:
    timeline = Timeline()
    timeline.mark_process_start("this process started")
    ((moment, what),) = timeline.marks
    assert what == "this process started"
    assert -3600 < moment < 0, "before the timeline began, and within this test session"
