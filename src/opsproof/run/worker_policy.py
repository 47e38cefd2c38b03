"""pytest-xdist's `-n N`, declined where workers cannot make the run faster (issue 18).

Measured on 2 cores (docs/running.md, "Workers"): over the built-in kinds' checks `-n 2` took
~2 x one process, because all their waiting is in the probes, which one process already runs
concurrently in their own processes, while each worker adds an interpreter, a parse of the
profile, a collection of every check and ~1 ms of messages a check. Checks of one's own that
compute (docs/custom-checks.md) can gain, but only with a core for each worker beside the
controller and the probe processes: on 2 cores 200 checks of 20 ms CPU were 1.30 x slower.

So, before xdist starts its workers, a run with `-n N` goes on in ONE process, exactly as
without `-n` (same records, bundle and exit status), and says so in one line, when:

- every test file the run would collect is a built-in kind's checks file (`Kind.checks`), or
- the usable cores (`usable_cores()`) are fewer than N + 2.

`--use-workers` keeps the workers whatever this module thinks; `-n 0` and no `-n` are untouched.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

CORES_VARIABLE = "OPSPROOF_USABLE_CORES"
INSIST = "--use-workers"
DOCS = "docs: running.md#workers-pytest-xdist"
KINDS_ONLY = (
    "the built-in kinds' checks wait on probes that already run concurrently; workers would make this run ~2x slower"
)


def add_option(parser: pytest.Parser) -> None:
    group = parser.getgroup("opsproof-workers", "opsproof workers: pytest-xdist's -n N (docs/running.md, Workers)")
    group.addoption(
        INSIST,
        action="store_true",
        default=False,
        help="with -n N: run on pytest-xdist workers even where opsproof would run in one process "
        "(only the built-in kinds' checks, or fewer than N + 2 usable cores; docs/running.md)",
    )


def usable_cores() -> int:
    """The cores this run may use: `$OPSPROOF_USABLE_CORES`, else the process's CPU affinity.

    The variable is for a container whose CPU quota is below the cores its affinity shows
    (a pod limited to 2 CPUs on a 32-core node sees 32), and lets the tests stand in a larger
    machine. A value that is not a whole number of at least 1 is a usage error (exit 4).
    """
    given = os.environ.get(CORES_VARIABLE, "").strip()
    if not given:
        affinity = getattr(os, "sched_getaffinity", None)
        return len(affinity(0)) if affinity is not None else os.cpu_count() or 1
    if not given.isdigit() or int(given) < 1:
        raise pytest.UsageError(f"${CORES_VARIABLE}={given!r}: the usable cores must be a whole number, at least 1")
    return int(given)


def decline_workers(config: pytest.Config) -> str | None:
    """Turn `-n N` off where workers cannot help; the line that says so and why, or None (workers kept).

    Runs after xdist's own `pytest_cmdline_main` (which turns `-n auto` into a number and sets
    `dist` and `tx`) and before its `pytest_configure`, which would start the distributed session:
    `-n 0`'s settings, set here, leave xdist out of the run altogether.
    """
    option = config.option
    workers = len(getattr(option, "tx", None) or ())
    if (
        not getattr(option, "numprocesses", None)  # no -n, or -n 0
        or not workers
        or getattr(option, "dist", "no") == "no"
        or hasattr(config, "workerinput")
        or option.collectonly
    ):
        return None
    cores = usable_cores()  # read first: a bad value is reported whatever else decides
    if config.getoption("use_workers"):
        return None
    asked = getattr(config.known_args_namespace, "numprocesses", None)  # as typed: xdist has made `auto` a number
    shown = (
        f"-n {asked} ({_counted(workers, 'worker')})" if asked in ("auto", "logical") else f"-n {option.numprocesses}"
    )
    if only_kind_checks(config):
        reason = KINDS_ONLY
    elif cores < workers + 2:
        reason = (
            f"{_counted(cores, 'usable core')}, fewer than the {workers + 2} it needs (one for each worker, one for "
            "the controller, one for the probes); with fewer, workers made even checks that compute ~1.3x slower"
        )
    else:
        return None
    option.numprocesses = 0  # what `-n 0` sets: xdist then starts no session
    option.dist = "no"
    option.tx = []
    return f"opsproof: {shown} not used: {reason} ({DOCS}; {INSIST} insists)"


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def only_kind_checks(config: pytest.Config) -> bool:
    """True when every test file the run would collect is a built-in kind's checks file.

    A kind's checks file is the one its declaration names (`Kind.checks`, e.g.
    `checks/health/test_http.py`): a file of one's own elsewhere, even named after a kind,
    is a team's code, which may compute. Any file found outside them answers False at once.
    """
    from opsproof.targets import kinds

    bases = {config.rootpath.resolve(), Path.cwd().resolve()}
    own = {(base / kind.checks).resolve() for base in bases for kind in kinds().values()}
    return all(path.resolve() in own for path in _test_files(config))


def _test_files(config: pytest.Config) -> Iterator[Path]:
    """The test modules collection would import, as pytest finds them (python_files, norecursedirs, --ignore)."""
    patterns = config.getini("python_files")
    skipped_dirs = config.getini("norecursedirs")
    ignored = {Path(p).resolve() for p in config.getoption("ignore") or ()}
    ignored_globs = [str(Path(g).absolute()) for g in config.getoption("ignore_glob") or ()]

    def left_out(path: Path) -> bool:
        return path.resolve() in ignored or any(fnmatch.fnmatch(str(path), glob) for glob in ignored_globs)

    def is_test_file(path: Path) -> bool:
        return path.suffix == ".py" and any(
            fnmatch.fnmatch(str(path) if os.sep in pattern else path.name, pattern) for pattern in patterns
        )

    for root in _roots(config):
        if not root.is_dir():  # a file, or what is none (`--pyargs` names a module): not a kind's
            if not left_out(root):
                yield root
            continue
        for folder, dirs, files in os.walk(root):
            here = Path(folder)
            dirs[:] = sorted(
                d
                for d in dirs
                if d != "__pycache__"
                and not any(fnmatch.fnmatch(d, pattern) for pattern in skipped_dirs)
                and not (here / d / "pyvenv.cfg").is_file()
                and not left_out(here / d)
            )
            yield from (here / f for f in sorted(files) if is_test_file(here / f) and not left_out(here / f))


def _roots(config: pytest.Config) -> list[Path]:
    """What the run collects from: checks/ when no paths are given (as the plugin's configure sets), else the args."""
    checks = Path.cwd() / "checks"
    if config.args_source != pytest.Config.ArgsSource.ARGS and checks.is_dir():
        return [checks]
    return [config.invocation_params.dir / arg.split("::")[0] for arg in config.args]


class Declined:
    """Says, as the session starts, that `-n` was not used and why: the run's first line, never its last."""

    def __init__(self, line: str) -> None:
        self.line = line

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(self.line, yellow=True)
        else:  # -p no:terminal
            print(self.line, file=sys.stderr)
