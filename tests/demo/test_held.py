"""The demo's pytest, spawned first and held warm (`opsproof.demo.held`): it runs the command it is sent, as sent."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from opsproof.demo import held
from opsproof.demo.run import held_pytest
from opsproof.demo.startup import Timeline

ECHO = """
import os, sys

def test_sent(request):
    # What `python -m pytest ARGS` would have: its arguments, its folder first on sys.path, the secrets.
    assert request.config.invocation_params.args == tuple(sys.argv[1:]) == ("-q", "-p", "no:cacheprovider", "test_echo.py")
    assert sys.argv[0].endswith("pytest/__main__.py")
    assert sys.path[0] == os.getcwd()
    assert os.environ["HELD_SECRET"] == "s3cret"
    assert "OPSPROOF_DEMO_GATE" not in os.environ
"""


def test_let_go_it_runs_pytest_with_the_arguments_and_secrets_sent(tmp_path: Path) -> None:
    (tmp_path / "test_echo.py").write_text(ECHO)
    timeline = Timeline()
    settled = []
    with held_pytest(tmp_path, timeline) as pytest_held:
        code = pytest_held.go(
            ["-q", "-p", "no:cacheprovider", "test_echo.py"], {"HELD_SECRET": "s3cret"}, lambda: settled.append(1)
        )
    assert code == 0
    assert settled == [1], "let go only once the services settled"
    marks = [what for _, what in timeline.marks]
    assert marks[0] == "pytest started (held at the gate)"
    assert "pytest: let go: pytest starts its run" in marks


SIGINT_SEEN = """
import signal

def test_sigint():
    assert signal.getsignal(signal.SIGINT) is {expected}
"""


@pytest.mark.parametrize("ignored", [False, True])
def test_it_takes_ctrl_c_back_as_the_demo_had_it(tmp_path: Path, ignored: bool) -> None:
    """Held, Ctrl-C is ignored (the demo ends it); let go, pytest has it as the demo had it (ignored under nohup)."""
    expected = "signal.SIG_IGN" if ignored else "signal.default_int_handler"
    (tmp_path / "test_sigint.py").write_text(SIGINT_SEEN.format(expected=expected))
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN if ignored else signal.default_int_handler)
    try:
        with held_pytest(tmp_path, Timeline()) as pytest_held:
            code = pytest_held.go(["-q", "-p", "no:cacheprovider", "test_sigint.py"], {}, lambda: None)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert code == 0


def test_never_let_go_it_ends_quietly_having_run_nothing(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "test_echo.py").write_text("def test_never():\n    raise AssertionError('ran')\n")
    with pytest.raises(RuntimeError, match="a service did not start"), held_pytest(tmp_path, Timeline()) as pytest_held:
        raise RuntimeError("a service did not start")
    assert pytest_held.process.returncode in (held.EXIT_NOT_RUN, -15)  # ended on the pipe's end, or stopped
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_it_warms_up_the_probes_libraries_but_not_other_plugins_packages() -> None:
    from opsproof.probes import kinds

    wanted = held.modules()
    assert {"pytest", "opsproof.run.plugin", "kubernetes.aio.client", "psycopg", "aiohttp"} <= set(wanted)
    # pytest rewrites the asserts of its plugins' packages and warns about one imported before it.
    rewritten = held.rewritten_by_pytest()
    assert {"testinfra", "xdist", "opsproof"} <= rewritten
    assert not [m for m in wanted if m.split(".")[0] in rewritten - {"opsproof"}]
    every_kinds = {
        m for kind in kinds().values() for m in kind.imports if m.split(".")[0] not in rewritten - {held.OWN}
    }
    assert every_kinds <= set(wanted)
    # opsproof's own modules may come first: its docstring tells pytest not to rewrite them.
    assert "PYTEST_DONT_REWRITE" in (sys.modules["opsproof"].__doc__ or "")
