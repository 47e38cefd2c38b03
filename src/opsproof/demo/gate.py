"""A pytest plugin that marks the demo's run in its timeline: collected, the checks started, done.

`opsproof demo --timeline` loads it through PYTEST_PLUGINS (so the command it shows, and
the bundle records, is the user's own). pytest itself was spawned before the services and
held until they were ready (`opsproof.demo.held`); this plugin only says when each part of
the run came, into the file named by $OPSPROOF_DEMO_MARKS.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from opsproof.demo.held import mark


def pytest_collection_finish(session: pytest.Session) -> None:
    mark(f"collected {len(session.items)} checks")


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    mark("the checks start")
    try:
        return (yield)
    finally:
        mark("every check done; the bundle is written next")
