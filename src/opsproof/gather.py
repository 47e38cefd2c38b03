"""Probe every selected target once, concurrently and bounded, alongside the checks.

When the test loop starts, the plugin hands every target the selected checks use
to a `Gatherer`, which probes them all (every kind together) in one event loop on a
background thread. A check waits only for its own target's facts, so the first
checks assert while later probes are still in flight. Under pytest-xdist the first
worker to ask probes for all workers and shares the facts through a file, so
`-n auto` still probes each target once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib
import json
import os
import signal
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from opsproof.probes import Facts, ProbeContext, kinds
from opsproof.profile import Profile

# kind name -> target name -> facts
FactsByKind = dict[str, dict[str, Facts]]


class Gatherer:
    """Probes the wanted targets of each kind in the background; `facts()` waits for one.

    Where the platform can fork, the probes run in a child process, on another core
    than the checks (the probes' CPU would otherwise contend for the checks' GIL). The
    child is forked by `prepare()` as soon as the profile is loaded, so it imports the
    probes' libraries while pytest collects; `start(wanted)` tells it what to probe,
    and each target's facts come back as a JSON line the moment its probe is done.
    """

    def __init__(self, profile: Profile, *, in_child: bool = True) -> None:
        self._profile = profile
        self._wanted: dict[str, set[str]] = {}
        self._facts: dict[tuple[str, str], Facts] = {}
        self._ready: dict[tuple[str, str], threading.Event] = {}
        self._lock = threading.Lock()
        self._done = False  # no more facts will come: waiters are released, new ones too
        self._early: dict[str, set[str]] = {}
        self._error: BaseException | None = None
        self._in_child = in_child and hasattr(os, "fork")
        self._child: int | None = None
        self._requests: int | None = None  # the pipe the child reads its work from
        self._results: int | None = None  # the pipe the child writes facts to
        self._thread: threading.Thread | None = None

    def prepare(self, early: Mapping[str, set[str]] | None = None) -> Gatherer:
        """Fork the probe child now (from the main thread, before any helper thread exists).

        `early` targets are probed at once, before collection ends: the plugin passes the
        ones a plain `pytest -m daily` run will surely select, so a cron run's probes
        overlap pytest's collection. `start()` then adds whatever else was selected.
        """
        if not self._in_child or self._child is not None:
            return self
        self._early = {kind: set(names) for kind, names in (early or {}).items() if names}
        request_read, request_write = os.pipe()
        result_read, result_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(request_write)
            os.close(result_read)
            _probe_in_child(self, request_read, result_write)
        os.close(request_read)
        os.close(result_write)
        self._child, self._requests, self._results = pid, request_write, result_read
        # Read from the start: early facts must not fill the pipe and stall the child.
        self._thread = threading.Thread(target=self._read_child, name="opsproof-probes", daemon=True)
        self._thread.start()
        return self

    def start(self, wanted: Mapping[str, set[str]]) -> Gatherer:
        """Probe these targets; `facts()` answers as each one is done."""
        self._wanted = {kind: set(names) for kind, names in wanted.items() if names}
        self.prepare()
        if self._requests is not None:
            with os.fdopen(self._requests, "w", encoding="utf-8") as requests:
                json.dump({kind: sorted(names) for kind, names in self._wanted.items()}, requests)
            self._requests = None
        else:
            self._thread = threading.Thread(target=self._run, name="opsproof-probes", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Release the child: unstarted, it exits; still probing (an interrupted run), it is killed."""
        if self._requests is not None:
            os.close(self._requests)
            self._requests = None
            if self._child is not None:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(self._child, 0)
                self._child = None
        if self._child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._child, signal.SIGKILL)

    def facts(self, kind: str, name: str) -> Facts:
        """The facts of one target, as soon as its probe is done."""
        self._event((kind, name)).wait()
        found = self._facts.get((kind, name))
        if found is None:
            raise self._error or RuntimeError(f"the {kind} probe returned no facts for {name!r}")
        return found

    def all(self) -> FactsByKind:
        """Every target's facts, once all probes are done."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        by_kind: FactsByKind = {kind: {} for kind in self._wanted}
        for (kind, name), facts in self._facts.items():
            if name in self._wanted.get(kind, ()):  # early probes of targets not selected stay out
                by_kind[kind][name] = facts
        return by_kind

    def _run(self) -> None:
        try:
            asyncio.run(self._probe_all(self._wanted, self._deliver))
        except BaseException as exc:  # handed to every check that waits: an `error` record each
            self._error = exc
        finally:
            self._release_waiters()

    def _event(self, key: tuple[str, str]) -> threading.Event:
        with self._lock:
            event = self._ready.get(key)
            if event is None:
                event = self._ready[key] = threading.Event()
                if self._done:
                    event.set()
            return event

    def _deliver(self, kind: str, facts: Facts) -> None:
        self._facts[(kind, facts.target)] = facts
        self._event((kind, facts.target)).set()

    def _release_waiters(self) -> None:
        with self._lock:
            self._done = True
            for event in self._ready.values():
                event.set()

    def _read_child(self) -> None:
        registry = kinds()
        assert self._results is not None and self._child is not None
        pid = self._child
        try:
            with os.fdopen(self._results, encoding="utf-8") as lines:
                for line in lines:
                    kind, payload = json.loads(line)
                    if kind == "error":
                        self._error = RuntimeError(f"the probes failed: {payload}")
                        continue
                    self._deliver(kind, registry[kind].facts.model_validate(payload))
        except BaseException as exc:
            self._error = exc
        finally:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            self._child = None
            self._release_waiters()

    def _context(self) -> ProbeContext:
        return ProbeContext(profile=self._profile, limit=asyncio.Semaphore(self._profile.defaults.concurrency))

    async def _probe_all(
        self, wanted: Mapping[str, set[str]], deliver: Callable[[str, Facts], None], ctx: ProbeContext | None = None
    ) -> None:
        ctx = ctx or self._context()
        registry = kinds()

        async def probe_kind(kind_name: str, names: set[str]) -> None:
            kind = registry[kind_name]
            targets = [t for n, t in self._profile.targets(kind.section).items() if n in names]
            async for facts in kind.gather(targets, ctx):
                deliver(kind_name, facts)

        await asyncio.gather(*(probe_kind(kind, names) for kind, names in wanted.items()))


def _probe_in_child(gatherer: Gatherer, request_read: int, result_write: int) -> NoReturn:
    status = 0
    try:
        # Import what the probes need while the parent collects, then wait for the work.
        for kind in kinds().values():
            if not gatherer._profile.targets(kind.section):
                continue  # no items of this kind: importing its libraries would only delay the probes
            for module in kind.imports:
                importlib.import_module(module)
        with os.fdopen(result_write, "w", encoding="utf-8") as out:

            def send(kind: str, facts: Facts) -> None:
                out.write(json.dumps([kind, facts.model_dump(mode="json")]) + "\n")
                out.flush()

            try:
                asyncio.run(_child_work(gatherer, request_read, send))
            except BaseException as exc:
                out.write(json.dumps(["error", f"{type(exc).__name__}: {exc}"]) + "\n")
                status = 1
    except BaseException:
        status = 1
    finally:
        # _exit: no atexit handlers, no flushing of buffers inherited from pytest.
        os._exit(status)


async def _child_work(gatherer: Gatherer, request_read: int, send: Callable[[str, Facts], None]) -> None:
    """Probe the early targets now; then what the parent asks for that they did not cover."""
    ctx = gatherer._context()
    early = asyncio.create_task(gatherer._probe_all(gatherer._early, send, ctx)) if gatherer._early else None

    def read_requests() -> str:
        with os.fdopen(request_read, encoding="utf-8") as requests:
            return requests.read()

    text = await asyncio.get_running_loop().run_in_executor(None, read_requests)
    wanted = {kind: set(names) for kind, names in json.loads(text).items()} if text else {}
    if early is not None and not wanted:  # the run ended before its test loop: probe nothing more
        early.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await early
        return
    rest = {kind: names - gatherer._early.get(kind, set()) for kind, names in wanted.items()}
    await asyncio.gather(
        *([early] if early is not None else []),
        gatherer._probe_all({kind: names for kind, names in rest.items() if names}, send, ctx),
    )


def probe_all(profile: Profile, wanted: Mapping[str, set[str]]) -> FactsByKind:
    """Facts for the wanted targets of each kind, probed concurrently; returns when all are done."""
    return Gatherer(profile).start(wanted).all()


def probe_all_shared(profile: Profile, wanted: Mapping[str, set[str]], share_dir: Path) -> FactsByKind:
    """As `probe_all`, but once across processes that share `share_dir` (xdist workers)."""
    share_dir.mkdir(parents=True, exist_ok=True)
    facts_file = share_dir / "facts.json"
    with open(share_dir / "facts.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if facts_file.exists():
            return _read(facts_file)
        facts = probe_all(profile, wanted)
        tmp = facts_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({k: {t: f.model_dump(mode="json") for t, f in v.items()} for k, v in facts.items()}, out)
        tmp.replace(facts_file)
        return facts


def _read(facts_file: Path) -> FactsByKind:
    registry = kinds()
    raw: dict[str, dict[str, Any]] = json.loads(facts_file.read_text())
    return {
        kind: {target: registry[kind].facts.model_validate(data) for target, data in by_target.items()}
        for kind, by_target in raw.items()
    }
