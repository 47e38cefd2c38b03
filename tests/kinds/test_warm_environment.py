"""A warm probe process (`opsproof.run.warm`) probes with the environment the run has when it probes.

It forks before the run's conftests load; a conftest may set what the probes' libraries or a
host's commands read (PATH, AWS_PROFILE, KUBECONFIG). Through testinfra's local:// backend,
for real: a `uname` put first on PATH after the fork names the host.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_hosts_checks import QUIET, fake_program, hosts_profile, local

from opsproof.profile import load_profile
from opsproof.run import warm
from opsproof.run.gather import Gatherer, serve_state


@pytest.fixture
def no_warm_left() -> Iterator[None]:
    yield
    warm.dismiss_all()


@pytest.mark.usefixtures("no_warm_left")
def test_a_warm_process_probes_with_the_environment_the_run_has_when_it_probes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A conftest loads after the warm processes fork: what it sets in os.environ must reach the probes.

    local:// runs the host's programs from PATH: a `uname` put first on PATH after the fork names the host.
    """
    warm.start(["hosts"], serve_state)
    folder = tmp_path / "bin"
    folder.mkdir()
    fake_program(folder, "uname", "echo Linux warm-test-host 6.1.0 x86_64")
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    path = tmp_path / "p.yaml"
    path.write_text(hosts_profile(local("self", QUIET)))
    gatherer = Gatherer(load_profile(path).profile).prepare()
    try:
        assert gatherer._children["hosts"].courier is not None  # the warm process probes
        gatherer.start({"hosts": {"self"}})
        assert gatherer.facts("hosts", "self").hostname == "warm-test-host"
    finally:
        gatherer.stop()
