"""pytest-xdist, the controller's side: one run id, one probing and one spool for all the workers.

The controller runs no check: its workers do, and their reports come back to it (the
`Recorder`). It probes, though: the workers read each target's facts from its spool
(`opsproof.run.spool`), so every target is probed once per run, not once per worker.
Each test report travels as one JSON string: execnet encodes a dict value by value in
Python, ~0.35 ms for a passing setup report and ~1.2 ms for a check's report with its
record (measured, both sides, on a loaded machine), where JSON's C codec takes a fraction.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from opsproof.run.spool import SPOOL, read_wanted
from opsproof.run.state import RunState

PACKED = "opsproof_packed"  # a test report's fields, as one JSON string


def is_distributed(config: pytest.Config) -> bool:
    """True in the controller of a pytest-xdist run (`-n 2`): it starts workers and runs no check itself."""
    option = config.option
    return (
        not hasattr(config, "workerinput")
        and not option.collectonly  # xdist collects in the controller then
        and getattr(option, "dist", "no") != "no"
        and bool(getattr(option, "tx", None))
    )


class XdistHooks:
    """Controller-side xdist wiring: the run id and the spool for each worker, probing once, worker output."""

    def __init__(self, state: RunState) -> None:
        self.state = state
        self.folder = Path(tempfile.mkdtemp(prefix="opsproof-facts-"))  # 0700: this user's only
        self.asked = False

    @property
    def spool(self) -> Path:
        return self.folder / SPOOL

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["opsproof_run_id"] = self.state.run_id
        node.workerinput["opsproof_started_at"] = self.state.started_at
        node.workerinput["opsproof_share_dir"] = str(self.folder)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> None:
        # Before xdist's loop, while the workers it has just started import and collect
        # (a second or more): the bundle's modules load now, not after the last check.
        from opsproof.run.recorder import load_bundle_writers

        load_bundle_writers()

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        # The first worker to collect wrote what its checks need before saying so.
        if not self.asked and self.state.gatherer is not None:
            self.asked = True
            self.state.gatherer.start(read_wanted(self.folder))

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", {}) or {}
        unmatched = output.get("opsproof_unmatched_waivers")
        if unmatched is not None:
            self.state.unmatched_waivers = unmatched
        windows = output.get("opsproof_unmatched_windows")
        if windows is not None:
            self.state.unmatched_windows = windows

    @pytest.hookimpl(wrapper=True)
    def pytest_report_from_serializable(self, config: pytest.Config, data: dict[str, Any]) -> Any:
        packed = data.pop(PACKED, None)
        if isinstance(packed, str):
            data.update(_unpacked(json.loads(packed)))
        return (yield)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class WorkerHooks:
    """Worker-side xdist wiring: a test report goes to the controller as one JSON string."""

    @pytest.hookimpl(wrapper=True)
    def pytest_report_to_serializable(self, config: pytest.Config, report: Any) -> Any:
        data = yield
        if isinstance(data, dict) and data.get("$report_type") == "TestReport":
            # A value JSON cannot carry (another plugin's object on the report) goes as it is.
            with contextlib.suppress(TypeError, ValueError):
                return {PACKED: json.dumps(data)}
        return data


def _unpacked(data: dict[str, Any]) -> dict[str, Any]:
    """A report's fields as execnet would have brought them: the tuples JSON made lists, tuples again."""
    data["location"] = tuple(data["location"])
    if isinstance(data.get("longrepr"), list):  # a skip's (path, line, reason)
        data["longrepr"] = tuple(data["longrepr"])
    for name in ("sections", "user_properties"):
        data[name] = [tuple(pair) for pair in data.get(name, ())]
    return data
