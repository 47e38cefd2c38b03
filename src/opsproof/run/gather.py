"""Probe every selected target once, concurrently and bounded, alongside the checks.

When the test loop starts, the plugin hands every target the selected checks use
to a `Gatherer`, which probes them all, each kind in a process of its own with its own
event loop. A check waits only for its own target's facts, so the first checks
assert while later probes are still in flight. Under pytest-xdist the controller
probes for every worker and streams the facts to them (`opsproof.run.spool`), so
`-n 2` still probes each target once.
"""

from __future__ import annotations

# asyncio is imported where it is used, never at the top: the pytest process imports this module
# before the profile loads, and only a probe process (or a run without fork) runs an event loop.
# Imported up front it was ~11 ms between pytest's start and the first request.
import contextlib
import gc
import json
import os
import select
import selectors
import signal
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, NoReturn

from opsproof.errors import NoFacts, hide_plumbing
from opsproof.probes import Facts, ProbeContext, ProbeKind, import_libraries, kind_named, kinds_in_use, redacted
from opsproof.profile import Profile
from opsproof.redaction import Redactor
from opsproof.run import warm

if TYPE_CHECKING:
    from opsproof.compliance.history import Location

# pytest shows a check whose target has no facts by its message, not these frames (opsproof.errors.NoFacts).
__tracebackhide__ = hide_plumbing


class Gatherer:
    """Probes the wanted targets of each kind in the background; `facts()` waits for one.

    Where the platform can fork, the probes run in child processes, one per kind, on
    other cores than the checks (the probes' CPU would otherwise contend for the checks'
    GIL). One process per kind, not one for all: a kind that computes much (a large
    cluster's lists to parse, host commands to fork, a backup to decompress) would
    otherwise hold up the one event loop that times another kind's requests, and an
    HTTP endpoint would look slow because a Kubernetes list was being parsed. The
    children are forked by `prepare()` as soon as the profile is loaded, so they import
    their libraries while pytest collects; `start(wanted)` tells each what to probe, and
    each target's facts come back as a JSON line the moment its probe is done. A kind whose
    process was forked earlier still (`opsproof.run.warm`, before the profile was loaded)
    gets that process: it has its libraries imported by now, and a courier forked here
    hands it the run's profile and secrets.
    """

    def __init__(
        self,
        profile: Profile,
        *,
        in_child: bool = True,
        history: Location | None = None,
        redactor: Redactor | None = None,
        change: str | None = None,
    ) -> None:
        self._profile = profile
        self._history = history
        self._redactor = redactor if redactor is not None else Redactor()
        self._change = change
        self._wanted: dict[str, set[str]] = {}
        # A probe process's facts stay as parsed JSON until a check asks (`facts()`): with an instant
        # server, thousands arrive before their checks run, and a model is ~1 KiB more than its JSON.
        self._facts: dict[tuple[str, str], Facts | dict[str, Any]] = {}
        # One condition for every target (not an Event each): notified as facts arrive.
        self._arrived = threading.Condition()
        # Checks still to ask for each target's facts; the facts are dropped after the last
        # one (None: kept for every caller). The records keep what the checks observed.
        self._uses: dict[tuple[str, str], int] | None = None
        self._done = False  # no more facts will come: waiters are released, new ones too
        self._early: dict[str, set[str]] = {}
        self._error: BaseException | None = None
        self._in_child = in_child and hasattr(os, "fork")
        self._children: dict[str, _Child] = {}  # kind -> its probe process
        self._thread: threading.Thread | None = None
        self._registry: dict[str, ProbeKind[Any, Any]] = {}
        # Work for the wait: called while a check waits for facts not in yet, one piece a call (the
        # Recorder makes the ended checks' pieces of the bundle); False when it has none left.
        self.while_waiting: Callable[[], bool] | None = None
        # The probe processes' pipes, looked at between two pieces of that work: a line waiting there needs
        # the reader thread, and so the GIL, which the work would otherwise hold up to the switch interval.
        self._incoming: select.poll | None = None

    def prepare(self, early: Mapping[str, set[str]] | None = None) -> Gatherer:
        """Fork the probe children now (from the main thread, before any helper thread exists).

        `early` targets are probed at once, before collection ends: the plugin passes the
        ones a plain `pytest -m daily` run will surely select, so a cron run's probes
        overlap pytest's collection. `start()` then adds whatever else was selected.
        """
        if not self._in_child or self._children:
            return self
        self._early = {kind: set(names) for kind, names in (early or {}).items() if names}
        parent = os.getpid()
        in_use = kinds_in_use(self._profile)
        started = warm.claim(set(in_use))  # processes forked before the profile was loaded, by kind
        for kind in in_use.values():  # no items of a kind: no process
            if kind.name in started:
                process = started[kind.name]
                self._children[kind.name] = _Child(process.pid, process.requests, process.results)
                continue
            request_read, request_write = os.pipe()
            result_read, result_write = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(request_write)
                os.close(result_read)
                # A sibling's pipe ends held here would keep its EOF from ever arriving.
                self._close_siblings(started.values(), keep=())
                _probe_in_child(self, kind.name, request_read, result_write, parent)
            os.close(request_read)
            os.close(result_write)
            self._children[kind.name] = _Child(pid, request_write, result_read)
        for kind_name, process in started.items():
            # Forked here, from the loaded profile: it hands the warm process the run's state, or,
            # should the state not pickle, probes this kind itself (a process forked here, as above).
            pid = os.fork()
            if pid == 0:
                self._close_siblings(started.values(), keep=process.courier_fds)
                warm.courier(self._run_state(), process, partial(_probe_in_child, self, kind_name, parent=parent))
            process.handed_over()
            self._children[kind_name].courier = pid
        if self._children:
            self._incoming = select.poll()
            for child in self._children.values():
                if child.results is not None:
                    self._incoming.register(child.results, select.POLLIN)
            # Read from the start: early facts must not fill a pipe and stall a child.
            self._thread = threading.Thread(target=self._read_children, name="opsproof-probes", daemon=True)
            self._thread.start()
        return self

    def start(self, wanted: Mapping[str, set[str]], uses: Mapping[tuple[str, str], int] | None = None) -> Gatherer:
        """Probe these targets; `facts()` answers as each one is done.

        `uses`: how many checks will ask for each (kind, name); its facts are released
        after the last of them, so a run's memory does not grow with every target's facts.
        """
        self._wanted = {kind: set(names) for kind, names in wanted.items() if names}
        self._uses = dict(uses) if uses is not None else None
        self.prepare()
        if self._children:
            for kind, child in self._children.items():
                child.send(sorted(self._wanted.get(kind, ())))
        else:
            self._thread = threading.Thread(target=self._run, name="opsproof-probes", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Release the children: unstarted, they exit; still probing (an interrupted run), they are killed."""
        for child in self._children.values():
            if child.requests is not None:
                os.close(child.requests)
                child.requests = None
                self._reap(child)  # and its courier, which has handed it the state by now
            if not child.reaped:
                for pid in (child.pid, child.courier):
                    if pid is not None:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)

    def facts(self, kind: str, name: str) -> Facts:
        """The facts of one target, as soon as its probe is done."""
        key = (kind, name)
        spare = self.while_waiting if self._incoming is not None else None
        while spare is not None:
            # The spare work one piece at a time, outside the lock, while the facts are not in (a look without
            # the lock: the wait looks again with it) and no line waits for the reader thread; then the next
            # facts to arrive are awaited, for any target, and the work goes on if these are not in yet.
            while key not in self._facts and not self._done and self._quiet():
                if not spare():
                    spare = None
                    break
            with self._arrived:
                if key in self._facts or self._done:
                    break
                if spare is not None:
                    self._arrived.wait()
        with self._arrived:
            while key not in self._facts and not self._done:
                self._arrived.wait()
            found = self._facts.get(key)
            if isinstance(found, dict):
                found = self._facts[key] = self._registry[kind].facts.model_validate(found)
            uses = self._uses
            if found is not None and uses is not None and key in uses:
                uses[key] -= 1
                if uses[key] <= 0:  # the last check of this target has them: released with its record
                    del uses[key], self._facts[key]
        if found is None:
            raise self._no_facts(kind, name)
        return found

    def _quiet(self) -> bool:
        """No probe process has written a line the reader thread has yet to read (as far as one look tells)."""
        assert self._incoming is not None
        try:
            # A pipe the reader closed is POLLNVAL (or, its number taken again, what that file says: no harm,
            # the spare work then waits for the end).
            return not any(events & (select.POLLIN | select.POLLHUP) for _, events in self._incoming.poll(0))
        except (OSError, RuntimeError):
            return False

    def _no_facts(self, kind: str, name: str) -> NoFacts:
        """A new exception for each check (raising one object again and again grows its traceback each time)."""
        error = self._error
        child = self._children.get(kind)
        if error is None and child is not None and child.ended is not None:
            return NoFacts(f"the {kind} probe process {child.ended} before it probed {name!r}")
        if error is None:
            return NoFacts(f"the {kind} probe returned no facts for {name!r}")
        if isinstance(error, NoFacts):  # a probe process's own words
            return NoFacts(str(error))
        # The probing in this process failed: the cause (a probe's bug) keeps its traceback.
        failure = NoFacts(f"the probes failed: {type(error).__name__}: {error}")
        failure.__cause__ = error
        return failure

    def _run(self) -> None:
        import asyncio

        try:
            asyncio.run(self._probe_all(self._wanted, self._deliver))
        except BaseException as exc:  # handed to every check that waits: an `error` record each
            self._error = exc
        finally:
            self._release_waiters()

    def _deliver(self, kind: str, facts: Facts) -> None:
        self._arrive((kind, facts.target), facts)

    def _arrive(self, key: tuple[str, str], facts: Facts | dict[str, Any]) -> None:
        with self._arrived:
            self._facts[key] = facts
            self._arrived.notify_all()

    def _release_waiters(self) -> None:
        with self._arrived:
            self._done = True
            self._arrived.notify_all()

    def _received(self, line: bytes) -> None:
        """One line from a probe process: `[kind, facts]` as JSON, or `["error", message]`."""
        kind, payload = json.loads(line)
        if kind == "error":
            self._error = NoFacts(f"the probes failed: {payload}")
            return
        self._arrive((kind, payload["target"]), payload)  # a model when a check asks

    def _read_children(self) -> None:
        self._registry = kinds_in_use(self._profile)
        by_fd = {child.results: child for child in self._children.values() if child.results is not None}
        pending = {fd: b"" for fd in by_fd}
        try:
            with selectors.DefaultSelector() as selector:
                for fd in by_fd:
                    selector.register(fd, selectors.EVENT_READ)
                while pending:
                    for key, _ in selector.select():
                        fd = int(key.fd)
                        chunk = os.read(fd, 1 << 16)
                        if not chunk:  # this kind's process is done
                            selector.unregister(fd)
                            os.close(fd)
                            del pending[fd]
                            self._reap(by_fd[fd])
                            continue
                        *lines, pending[fd] = (pending[fd] + chunk).split(b"\n")
                        for line in lines:
                            self._received(line)
        except BaseException as exc:
            self._error = exc
        finally:
            for child in self._children.values():
                self._reap(child)
            self._release_waiters()

    def _run_state(self) -> tuple[Any, ...]:
        """What a probe process needs of this gatherer (`serve_state` makes one of it in a warm process)."""
        return (self._profile, self._early, self._history, self._redactor, self._change)

    def _close_siblings(self, started: Iterable[warm.Warm], keep: tuple[int, ...]) -> None:
        """In a process just forked: close the parent's ends of every other probe process's pipes."""
        held = [fd for child in self._children.values() for fd in (child.requests, child.results) if fd is not None]
        held += [fd for process in started for fd in process.courier_fds]
        for fd in held + warm.held_fds():
            if fd not in keep:
                with contextlib.suppress(OSError):
                    os.close(fd)

    @staticmethod
    def _reap(child: _Child) -> None:
        if not child.reaped:
            for pid in (child.pid, child.courier):
                if pid is not None:
                    with contextlib.suppress(ChildProcessError):
                        _, status = os.waitpid(pid, 0)
                        if pid == child.pid:
                            child.ended = _ended_badly(status)
            child.reaped = True

    def _context(self) -> ProbeContext:
        import asyncio

        return ProbeContext(
            profile=self._profile,
            limit=asyncio.Semaphore(self._profile.defaults.concurrency),
            history=self._history,
            redactor=self._redactor,
            change=self._change,
        )

    async def _probe_all(
        self, wanted: Mapping[str, set[str]], deliver: Callable[[str, Facts], None], ctx: ProbeContext | None = None
    ) -> None:
        import asyncio

        ctx = ctx or self._context()
        registry = kinds_in_use(self._profile)

        async def probe_kind(kind_name: str, names: set[str]) -> None:
            kind = registry[kind_name]
            targets = [t for n, t in self._profile.targets(kind.section).items() if n in names]
            async for facts in kind.gather(targets, ctx):
                deliver(kind_name, redacted(facts, ctx.redactor))

        await asyncio.gather(*(probe_kind(kind, names) for kind, names in wanted.items()))


@dataclass
class _Child:
    """One kind's probe process and the parent's ends of its pipes."""

    pid: int
    requests: int | None  # the pipe it reads its work from (closed once sent)
    results: int | None  # the pipe it writes facts to
    reaped: bool = False
    courier: int | None = None  # the process that handed a warm process its state (opsproof.run.warm)
    ended: str | None = None  # how the process ended, once reaped, when it did not end well


    def send(self, names: list[str]) -> None:
        if self.requests is not None:
            fd, self.requests = self.requests, None
            # A process that already died closed its end: its missing facts are reported
            # by the reader (as an `error` for each of its checks), not by a crash here.
            with contextlib.suppress(BrokenPipeError), os.fdopen(fd, "w", encoding="utf-8") as requests:
                json.dump(names, requests)


def _ended_badly(status: int) -> str | None:
    """How a reaped probe process ended, in words (`was killed by SIGKILL ...`); None when it exited 0."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        # Nobody in the run sends a probe process SIGKILL while it probes: the kernel's out-of-memory killer does.
        oom = " (the out-of-memory killer's signal: see dmesg)" if number == signal.SIGKILL else ""
        return f"was killed by {name}{oom}"
    code = os.waitstatus_to_exitcode(status)
    return f"exited with status {code}" if code else None


# After the fork, the probes' first requests go out before `warm.die_with` (its ctypes import is ~4 ms of a
# forked process's CPU): its event loop arms it this long after it starts, while the first answers are awaited
# (measured in 1,000-item runs at concurrency 256: the 256th request left 21-47 ms after the fork, the first
# answer came at 113-124 ms). A run that dies before then is noticed there (`die_with` looks at the parent); and
# until the parent sends the work, its death is also the request pipe's end, which ends the probing (`_child_work`).
DIE_WITH_AFTER_S = 0.08


def _probe_in_child(gatherer: Gatherer, kind: str, request_read: int, result_write: int, parent: int) -> NoReturn:
    status = 0
    try:
        cleans_up = kind_named(kind).cleans_up  # left to notice the run's end and clean up after itself
        settle(gatherer, kind)
        # Import what the probes need while the parent collects, then wait for the work.
        import_libraries(kind_named(kind))
        die_with = None if cleans_up else partial(warm.die_with, parent)
        status = serve(gatherer, kind, request_read, result_write, die_with)
    except BaseException:
        status = 1
    finally:
        # _exit: no atexit handlers, no flushing of buffers inherited from pytest.
        os._exit(status)


def serve_state(kind: str, state: tuple[Any, ...], request_read: int, result_write: int) -> int:
    """In a warm process (`opsproof.run.warm`): probe as a process forked by `prepare` with this state would."""
    profile, early, history, redactor, change = state
    gatherer = Gatherer(profile, history=history, redactor=redactor, change=change)
    gatherer._early = early
    settle(gatherer, kind)
    return serve(gatherer, kind, request_read, result_write)


def settle(gatherer: Gatherer, kind: str) -> None:
    """In a kind's probe process: yield the CPU to the kinds whose checks judge time.

    Without one in the run, nicing would only slow the probes the checks are waiting for.
    """
    registry = kinds_in_use(gatherer._profile)
    if any(k.times_targets for k in registry.values()) and not registry[kind].times_targets:
        os.nice(10)


def serve(
    gatherer: Gatherer, kind: str, request_read: int, result_write: int, die_with: Callable[[], None] | None = None
) -> int:
    """In a kind's probe process: probe what the parent asks for; each target's facts a JSON line. The exit status.

    `die_with`: called `DIE_WITH_AFTER_S` into the probing (see there).
    """
    import asyncio

    # What exists now (modules, the profile, the run's state) lives as long as this process: frozen,
    # no collection walks it again. And a young collection every 30,000 objects, not 700: each walks
    # the probes in flight (256 HTTP exchanges' tasks, futures, buffers). Measured over 1,000 HTTP
    # probes: the collector's 50-80 passes took 16-78 ms of CPU; at 10,000 objects 2-3 passes took
    # 3-11 ms, both while the first 256 connections opened (their requests' delay); at 30,000, none.
    # Cycles are still collected (a few per 1,000 HTTP probes), so a long probe of another kind keeps its memory:
    # the collector on, though the parent forked this process while it had it paused for the run's start
    # (`opsproof.heap`), and a forked process inherits that.
    gc.freeze()
    gc.set_threshold(30_000)
    gc.enable()
    lines = FactsLines(result_write)
    try:
        asyncio.run(_armed(die_with, _child_work(gatherer, kind, request_read, lines.send)))
    except BaseException as exc:
        lines.add(["error", f"{type(exc).__name__}: {exc}"])
        return 1
    finally:
        lines.close()
    return 0


class FactsLines:
    """A probe process's facts on their way to the parent: a JSON line each, one write per turn of its event loop.

    A write per facts woke the parent's reader (which takes the GIL from the checks) once per target;
    the facts done in one turn of the loop (the answers one poll of the sockets brought in) now
    leave together, at the start of the next turn, so none waits for a later answer.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lines: list[str] = []
        self._failed: OSError | None = None  # the parent is gone: the next facts end the probing, as a write would

    def send(self, kind: str, facts: Facts) -> None:
        """From the event loop: one target's facts, written once this turn of the loop ends."""
        import asyncio

        if self._failed is not None:
            raise self._failed
        if not self._lines:
            asyncio.get_running_loop().call_soon(self._flush_in_loop)
        self.add([kind, facts.model_dump(mode="json")])

    def add(self, line: list[Any]) -> None:
        self._lines.append(json.dumps(line))

    def flush(self) -> None:
        if self._lines:
            data = memoryview(("\n".join(self._lines) + "\n").encode())
            self._lines.clear()
            while data:  # a pipe takes what fits; the rest when the parent has read
                data = data[os.write(self._fd, data) :]

    def _flush_in_loop(self) -> None:
        try:
            self.flush()
        except OSError as exc:  # not the loop's to log: the probe that sends next raises it
            self._failed = exc

    def close(self) -> None:
        """What is left, then the end of the pipe (the parent's EOF)."""
        try:
            self.flush()
            if self._failed is not None:
                raise self._failed
        finally:
            os.close(self._fd)


async def _armed(die_with: Callable[[], None] | None, work: Coroutine[Any, Any, None]) -> None:
    """`work`, with `die_with` called `DIE_WITH_AFTER_S` after it starts (while it goes on)."""
    import asyncio

    if die_with is not None:
        asyncio.get_running_loop().call_later(DIE_WITH_AFTER_S, die_with)
    await work


async def _child_work(gatherer: Gatherer, kind: str, request_read: int, send: Callable[[str, Facts], None]) -> None:
    """Probe this kind's early targets now; then what the parent asks for that they did not cover."""
    import asyncio

    ctx = gatherer._context()
    early_names = gatherer._early.get(kind, set())
    early = asyncio.create_task(gatherer._probe_all({kind: early_names}, send, ctx)) if early_names else None
    text = (await _read_to_end(request_read)).decode("utf-8")
    wanted = set(json.loads(text)) if text else set()
    if early is not None and not wanted:  # none selected, or the run ended before its test loop
        early.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await early
        return
    rest = wanted - early_names
    await asyncio.gather(
        *([early] if early is not None else []),
        *([gatherer._probe_all({kind: rest}, send, ctx)] if rest else []),
    )


async def _read_to_end(fd: int) -> bytes:
    """Everything a pipe brings until its writer closes it (then closed here), read by the event loop.

    Not a thread's blocking read: the loop's default executor (a thread, and its module's import) was ~1 ms
    of a just-forked probe process's CPU before its first request.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []
    ended: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        try:
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
        except BlockingIOError:  # all there is for now
            return
        except OSError as exc:
            if not ended.done():
                ended.set_exception(exc)
            return
        if not ended.done():
            ended.set_result(None)

    try:
        os.set_blocking(fd, False)
        loop.add_reader(fd, readable)
        try:
            await ended
        finally:
            loop.remove_reader(fd)
    finally:
        os.close(fd)
    return b"".join(chunks)
