"""Probe processes forked before the profile is loaded (`opsproof.run.warm`), told their targets after.

Each test forks real processes from this one and probes the HTTP server the tests start; a
run's own use of them is covered by every subprocess run of the suite (`--profile` on the
command line) and by the benchmarks' timeline test (tests/core/test_startup_order.py).
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_runbook_profiles import PROFILES, fake_environment

from conftest import HttpServer, http_profile, process_alive, wait_for
from opsproof.profile import Profile, load_profile
from opsproof.run import warm
from opsproof.run.gather import Gatherer, serve_state


@pytest.fixture
def no_warm_left() -> Iterator[None]:
    yield
    warm.dismiss_all()


def _gatherer(tmp_path: Path, base: str) -> Gatherer:
    path = tmp_path / "p.yaml"
    path.write_text(http_profile(f"{{name: a, url: '{base}/health'}}", f"{{name: b, url: '{base}/health?b'}}"))
    return Gatherer(load_profile(path).profile)


@pytest.mark.usefixtures("no_warm_left")
def test_a_warm_process_probes_the_targets_it_is_told_after_it_started(tmp_path: Path, http_server: HttpServer) -> None:
    warm.start(["http"], serve_state)  # before the profile is loaded, as the plugin does
    warm_pid = warm._started["http"].pid
    gatherer = _gatherer(tmp_path, http_server.base).prepare(early={"http": {"a"}})
    try:
        child = gatherer._children["http"]
        assert child.pid == warm_pid and child.courier is not None  # the warm process probes; a courier told it
        gatherer.start({"http": {"a", "b"}})
        a, b = gatherer.facts("http", "a"), gatherer.facts("http", "b")
        assert (a.reached, a.status, b.status) == (True, 200, 200)
        assert b.url.endswith("/health?b")
    finally:
        gatherer.stop()
    wait_for(lambda: not process_alive(warm_pid), "the warm process to end with the run")


@pytest.mark.usefixtures("no_warm_left")
def test_a_warm_process_of_a_kind_the_profile_lacks_is_killed_before_it_contacts_anything(
    tmp_path: Path, http_server: HttpServer
) -> None:
    warm.start(["http", "tls"], serve_state)
    unused = warm._started["tls"].pid
    gatherer = _gatherer(tmp_path, http_server.base).prepare()
    try:
        assert set(gatherer._children) == {"http"}
        assert not process_alive(unused)  # killed and reaped by prepare()
        gatherer.start({"http": {"a"}})
        assert gatherer.facts("http", "a").status == 200
    finally:
        gatherer.stop()


@pytest.mark.usefixtures("no_warm_left")
def test_state_that_does_not_pickle_is_probed_by_the_courier_itself(
    tmp_path: Path, http_server: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unpicklable(*_: object) -> bytes:
        raise pickle.PicklingError("made after the fork")

    monkeypatch.setattr(warm, "dumps", unpicklable)  # the courier, forked below, inherits it
    warm.start(["http"], serve_state)
    warm_pid = warm._started["http"].pid
    gatherer = _gatherer(tmp_path, http_server.base).prepare()
    try:
        gatherer.start({"http": {"a", "b"}})
        assert gatherer.facts("http", "a").status == 200 and gatherer.facts("http", "b").status == 200
        wait_for(lambda: not process_alive(warm_pid), "the unused warm process to exit")
    finally:
        gatherer.stop()


@pytest.mark.usefixtures("no_warm_left")
def test_a_warm_process_that_died_leaves_its_checks_an_error_never_facts(
    tmp_path: Path, http_server: HttpServer
) -> None:
    warm.start(["http"], serve_state)
    warm_pid = warm._started["http"].pid
    os.kill(warm_pid, signal.SIGKILL)
    gatherer = _gatherer(tmp_path, http_server.base).prepare()
    try:
        gatherer.start({"http": {"a"}})
        with pytest.raises(RuntimeError, match=r"the http probe process was killed by SIGKILL .* before it probed 'a'"):
            gatherer.facts("http", "a")
    finally:
        gatherer.stop()


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_every_example_profile_reaches_a_warm_process_as_it_was_loaded(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every kind's models pickle: by name, or by their place in the table the processes share since the fork."""
    env = fake_environment(path.read_text(encoding="utf-8"))
    loaded = load_profile(path, environ=env)
    classes = warm._model_classes()
    monkeypatch.setattr(warm, "_classes", classes)  # the table a warm process holds since its fork
    state = warm.dumps(((loaded.profile, {}, None, loaded.redactor, None), {}, "/"), classes)
    (profile, _, _, redactor, _), _, _ = pickle.loads(state)
    assert isinstance(profile, Profile)
    assert profile.model_dump() == loaded.profile.model_dump()
    assert profile.targets("http") == loaded.profile.targets("http")
    secrets = [value for value in env.values() if value not in loaded.redactor.redact(value)]
    assert secrets and all(value not in redactor.redact(value) for value in secrets)


def test_a_fresh_run_hands_the_state_over_rather_than_fall_back(tmp_path: Path, http_server: HttpServer) -> None:
    """In a fresh interpreter, as a run: the kind's modules are imported before the table of classes is taken.

    A run imports only its own kinds' modules, and those make generic models on import
    (`Threshold[Duration]`): made after the table, the state would not pickle and every run
    would fall back to the courier probing (correct, and slower).
    """
    path = tmp_path / "p.yaml"
    # A latency threshold: a `Threshold[Duration]` in the state, the generic model its module makes.
    item = f"{{name: api, url: '{http_server.base}/health', expect: {{latency: {{warn: 1s, fail: 3s}}}}}}"
    path.write_text(http_profile(item))
    script = f"""
from pathlib import Path
from opsproof.run import warm
from opsproof.run.gather import serve_state
warm.start(["http"], serve_state)
from opsproof.profile import load_profile
loaded = load_profile(Path({str(path)!r}))
process = warm._started["http"]
try:
    warm.dumps(((loaded.profile, {{}}, None, loaded.redactor, None), {{}}, "/"), process.classes)
finally:
    warm.dismiss_all()
print("handed over")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "handed over"


def test_a_class_made_after_the_fork_without_a_name_does_not_pickle() -> None:
    from opsproof.model.fields import Threshold

    made_later = Threshold[int]  # parametrized now: in no table and nowhere importable
    with pytest.raises(pickle.PicklingError, match="made after the warm processes forked"):
        warm.dumps((made_later(warn=1),), {})


def test_only_top_level_sections_name_the_kinds_to_warm() -> None:
    text = b"environment: x\nhttp:\n  - name: a\n    tls: {}\ntls :\n  - name: b\npostgres_extra: 1\n"
    assert warm.guessed_kinds(text) == ["http", "tls"]
