"""Probe processes forked before the profile is loaded, so their libraries are imported by the time it is.

A kind's probe process imports its libraries after it forks (aiohttp: ~0.11 s of CPU, part of
it the SSL contexts aiohttp builds at import), and it can fork only once the profile is loaded.
Those 0.11 s sat between the loaded profile and the first request. So when the command line
names a profile, the plugin forks, from `pytest_load_initial_conftests`, a process for each kind
the profile's file seems to have (a top-level `http:`), which imports that kind's libraries while
the pytest process loads and checks the profile (`start`). The guess only decides what is
imported ahead: `Gatherer.prepare` gives such a process the kind only if the loaded profile has
items of it (`claim`), and any other is killed before it has contacted anything.

The warm process knows nothing of the run yet: a courier forked by `prepare` (which has the
loaded profile, its secrets and the early targets) pickles them into a pipe, and the warm process
then probes exactly as a process forked at `prepare` would (`opsproof.run.gather.serve`). The
profile's models pickle by their names, or, for the pydantic classes made at import without an
importable name (`Threshold[Duration]`), by their place in a table both processes have held since
the fork; the profile's own class (made for its sections at load) is rebuilt as `Profile`. State
that does not pickle leaves the courier to probe the kind itself, as a process forked at
`prepare` did before. Nothing is probed before `prepare`: a usage error still contacts nothing.
"""

from __future__ import annotations

import contextlib
import copyreg
import io
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import BaseModel

if TYPE_CHECKING:
    import pytest

# How a warm process probes once it has the run's state (`opsproof.run.gather.serve_state`): the
# kind, the state the gatherer handed over, its request and result pipes; the exit status.
Serve = Callable[[str, tuple[Any, ...], int, int], int]

# A top-level key of a YAML profile: the kinds' sections are plain words at the start of a line.
# A newline, not `^` and MULTILINE: 5x faster (1.7 ms over a 10,000-item profile, before it loads).
_TOP_LEVEL_KEY = re.compile(rb"\n([a-z][a-z0-9_]*)[ \t]*:")


@dataclass
class Warm:
    """A warm process (the parent's view): its pid and the parent's ends of its pipes."""

    kind: str
    pid: int
    payload: int  # the run's state goes in here (written by the courier)
    requests: int  # what to probe (written by the gatherer, as for any probe process)
    results: int  # the facts come out here
    # The other ends, kept until the courier forks: it probes the kind itself if the state does not pickle.
    request_read: int
    result_write: int
    classes: dict[int, type[Any]] = field(repr=False, default_factory=dict)

    @property
    def courier_fds(self) -> tuple[int, ...]:
        return (self.payload, self.request_read, self.result_write)

    def handed_over(self) -> None:
        """In the parent, once the courier is forked: the pipe ends only the courier needs are closed."""
        for fd in self.courier_fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def dismiss(self) -> None:
        """Not needed by this run: killed (it contacted nothing), reaped, its pipes closed."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        for fd in (*self.courier_fds, self.requests, self.results):
            with contextlib.suppress(OSError):
                os.close(fd)


_started: dict[str, Warm] = {}
_owner = 0  # the process that forked them: a process forked from it has none of its own
# pydantic's model classes when the warm processes forked: the same objects in every one of them.
_classes: dict[int, type[Any]] = {}


def start_for_run(early_config: pytest.Config, serve: Serve) -> None:
    """From `pytest_load_initial_conftests`: warm processes for the kinds of the profile the command line names.

    Only a run that will probe: not an xdist worker (the controller probes), not
    `--collect-only` or `--help`; and only `--profile` on the command line (a profile from
    the environment or the ini takes the usual way, forked once it is loaded).
    """
    known = early_config.known_args_namespace
    chosen = getattr(known, "profile", None)
    if not chosen or _xdist_worker() or not hasattr(os, "fork"):
        return
    if getattr(known, "collectonly", False) or getattr(known, "help", False):
        return
    from opsproof.profile import read_profile_bytes, resolve_profile_path

    try:
        path = resolve_profile_path(chosen, Path.cwd())
        head = read_profile_bytes(path, str(path))  # as the run reads it: a regular file (not a FIFO), bounded
    except Exception:  # the run reports a profile it cannot read, with its exit status
        return
    from opsproof.probes import kind_named

    # A process that imported a kind's libraries already (the demo's held pytest) forks at `prepare`.
    start((name for name in guessed_kinds(head) if not all(m in sys.modules for m in kind_named(name).imports)), serve)
    early_config.add_cleanup(dismiss_all)


def _xdist_worker() -> bool:
    """This process is a pytest-xdist worker (execnet starts it with `python -c`).

    Not the variable alone: a pytest a test of an xdist run starts inherits PYTEST_XDIST_WORKER.
    """
    return bool(os.environ.get("PYTEST_XDIST_WORKER")) and sys.argv[:1] == ["-c"]


def guessed_kinds(text: bytes) -> list[str]:
    """The kinds whose sections a profile's text seems to have (a guess: what to import ahead)."""
    from opsproof.targets import names

    keys = {match.decode() for match in _TOP_LEVEL_KEY.findall(b"\n" + text)}
    return [name for name in names() if name in keys]


def start(kinds: Iterable[str], serve: Serve) -> None:
    """Fork a warm process for each of these kinds (once per run: `claim` or `dismiss_all` end them)."""
    global _owner, _classes
    from opsproof.probes import kind_named

    if _started and _owner == os.getpid():
        return
    _started.clear()
    _owner = os.getpid()
    wanted = list(kinds)
    for name in wanted:
        kind_named(name)  # its probe and target modules, imported here once for the run's processes
    # After those imports: the generic models their targets made (`Threshold[Duration]`) are in the table.
    _classes = _model_classes()
    for name in wanted:
        payload_read, payload_write = os.pipe()
        request_read, request_write = os.pipe()
        result_read, result_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            for fd in (*held_fds(), payload_write, request_write, result_read):
                os.close(fd)
            _started.clear()
            _main(name, payload_read, request_read, result_write, _owner, serve)
        os.close(payload_read)
        _started[name] = Warm(
            name, pid, payload_write, request_write, result_read, request_read, result_write, _classes
        )


def held_fds() -> list[int]:
    """The parent's ends of the unclaimed warm processes' pipes (a process forked later closes them)."""
    return [fd for process in _started.values() for fd in (*process.courier_fds, process.requests, process.results)]


def claim(kinds: set[str]) -> dict[str, Warm]:
    """The warm processes of these kinds, now the gatherer's; the others are dismissed."""
    if _owner != os.getpid():
        return {}
    claimed = {name: process for name, process in _started.items() if name in kinds}
    for name, process in _started.items():
        if name not in kinds:
            process.dismiss()
    _started.clear()
    return claimed


def dismiss_all() -> None:
    """The run ended (or never probed): warm processes nobody claimed are killed."""
    claim(set())


def die_with(parent: int) -> None:
    """This process gets SIGKILL when the run dies, even killed outright (Linux; elsewhere a no-op).

    A probe inside a 30-second query would otherwise outlive a SIGKILLed run by that long.
    """
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before the line above: nobody will send the signal
        os._exit(1)


def _main(kind: str, payload_read: int, request_read: int, result_write: int, parent: int, serve: Serve) -> NoReturn:
    """The warm process: import the kind's libraries, wait for the run's state, then probe as told."""
    from opsproof.probes import import_libraries, kind_named

    status = 0
    try:
        probe = kind_named(kind)
        if not probe.cleans_up:
            die_with(parent)
        import_libraries(probe)
        with os.fdopen(payload_read, "rb") as payload:
            state = payload.read()
        if state:  # nothing: the kind has no items in this run, or the courier probes it itself
            status = _probe(kind, state, request_read, result_write, serve)
    except BaseException:
        status = 1
    finally:
        os._exit(status)


def _probe(kind: str, state: bytes, request_read: int, result_write: int, serve: Serve) -> int:
    import pickle

    try:
        run_state, environ, cwd = pickle.loads(state)
        # As a process forked at `prepare` would have them: a conftest may have set a variable
        # the probes' libraries read (AWS_PROFILE, KUBECONFIG) after this process forked.
        os.environ.clear()
        os.environ.update(environ)
        os.chdir(cwd)
    except Exception as exc:  # every check of the kind says why, as for a probe process that failed
        with os.fdopen(result_write, "w", encoding="utf-8") as out:
            out.write(json.dumps(["error", f"the run's state did not reach the probe process: {exc}"]) + "\n")
        return 1
    return serve(kind, run_state, request_read, result_write)


def courier(run_state: tuple[Any, ...], process: Warm, fallback: Callable[[int, int], NoReturn]) -> NoReturn:
    """In a process forked by `prepare`: hand the warm process the run's state, or probe the kind in its stead.

    `fallback(request_read, result_write)` probes the kind in this process, as one forked by `prepare`.
    """
    status = 0
    try:
        try:
            state = dumps((run_state, dict(os.environ), os.getcwd()), process.classes)
        except Exception:  # left to a process that has the state: this one (the warm one reads nothing and exits)
            os.close(process.payload)
            fallback(process.request_read, process.result_write)
        os.close(process.request_read)
        os.close(process.result_write)
        # No `die_with` here: its ctypes import was ~4 ms of CPU between the state and the warm process.
        # Should the run die, the warm process dies with it (this write then fails) or, a kind that cleans
        # up, reads the state and finds nothing to probe: this process ends either way.
        with os.fdopen(process.payload, "wb") as out:  # a warm process that died: its checks say so, not this
            out.write(state)
    except BaseException:
        status = 1
    finally:
        os._exit(status)


def dumps(state: Any, classes: dict[int, type[Any]]) -> bytes:
    """`state` pickled for a warm process (see the module's docstring for the classes)."""
    import pickle

    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    table = copyreg.dispatch_table.copy()
    table[type(BaseModel)] = lambda cls: _reduce_class(cls, classes)
    for profile in _profiles_in(state):
        table[type(profile)] = _reduce_profile
    pickler.dispatch_table = table
    pickler.dump(state)
    return buffer.getvalue()


def _profiles_in(state: Any) -> list[Any]:
    """The profiles at the top of a state (tuples of tuples): their classes are made at load."""
    from opsproof.profile import ProfileBase

    if isinstance(state, ProfileBase):
        return [state]
    return [found for part in state for found in _profiles_in(part)] if isinstance(state, tuple) else []


def _reduce_class(cls: type[Any], classes: dict[int, type[Any]]) -> Any:
    import pickle

    module = sys.modules.get(cls.__module__)
    if module is not None and _named(module, cls.__qualname__) is cls:
        return cls.__qualname__  # by name, as pickle does
    if classes.get(id(cls)) is cls:
        return (_class_numbered, (id(cls),))
    raise pickle.PicklingError(f"{cls!r} has no importable name and was made after the warm processes forked")


def _named(module: Any, qualname: str) -> Any:
    found = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found


def _class_numbered(number: int) -> type[Any]:
    return _classes[number]


def _reduce_profile(profile: Any) -> Any:
    return (_profile_from, (profile.__getstate__(),))


def _profile_from(state: Any) -> Any:
    """The profile as `Profile`: its class for its sections is made at load, in the pytest process only."""
    from opsproof.profile import Profile

    profile = Profile.__new__(Profile)
    profile.__setstate__(state)
    return profile


def _model_classes() -> dict[int, type[Any]]:
    found: dict[int, type[Any]] = {}
    stack: list[type[Any]] = [BaseModel]
    while stack:
        for sub in stack.pop().__subclasses__():
            if id(sub) not in found:
                found[id(sub)] = sub
                stack.append(sub)
    return found
