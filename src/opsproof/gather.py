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
    than the checks (the probes' CPU would otherwise contend for the checks' GIL), and
    each target's facts come back as a JSON line the moment its probe is done.
    """

    def __init__(self, profile: Profile, wanted: Mapping[str, set[str]], *, in_child: bool = True) -> None:
        self._profile = profile
        self._wanted = {kind: set(names) for kind, names in wanted.items() if names}
        self._facts: dict[tuple[str, str], Facts] = {}
        self._ready = {(kind, name): threading.Event() for kind, names in self._wanted.items() for name in names}
        self._error: BaseException | None = None
        self._child: int | None = None
        self._in_child = in_child and hasattr(os, "fork")
        self._thread = threading.Thread(target=self._run, name="opsproof-probes", daemon=True)

    def start(self) -> Gatherer:
        if self._in_child:
            # Fork from the calling (main) thread, before the reader thread exists.
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read_end)
                _probe_in_child(self, write_end)
            os.close(write_end)
            self._child = pid
            self._thread = threading.Thread(
                target=self._read_child, args=(pid, read_end), name="opsproof-probes", daemon=True
            )
        self._thread.start()
        return self

    def stop(self) -> None:
        """End a child still probing (an interrupted run); its results are no longer wanted."""
        if self._child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._child, signal.SIGKILL)

    def facts(self, kind: str, name: str) -> Facts:
        """The facts of one target, as soon as its probe is done."""
        self._ready[(kind, name)].wait()
        found = self._facts.get((kind, name))
        if found is None:
            raise self._error or RuntimeError(f"the {kind} probe returned no facts for {name!r}")
        return found

    def all(self) -> FactsByKind:
        """Every target's facts, once all probes are done."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        by_kind: FactsByKind = {kind: {} for kind in self._wanted}
        for (kind, name), facts in self._facts.items():
            by_kind[kind][name] = facts
        return by_kind

    def _run(self) -> None:
        try:
            asyncio.run(self._probe_all(self._deliver))
        except BaseException as exc:  # handed to every check that waits: an `error` record each
            self._error = exc
        finally:
            for event in self._ready.values():
                event.set()

    def _deliver(self, kind: str, facts: Facts) -> None:
        self._facts[(kind, facts.target)] = facts
        self._ready[(kind, facts.target)].set()

    def _read_child(self, pid: int, read_end: int) -> None:
        registry = kinds()
        try:
            with os.fdopen(read_end, encoding="utf-8") as lines:
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
            for event in self._ready.values():
                event.set()

    async def _probe_all(self, deliver: Callable[[str, Facts], None]) -> None:
        ctx = ProbeContext(profile=self._profile, limit=asyncio.Semaphore(self._profile.defaults.concurrency))
        registry = kinds()

        async def probe_kind(kind_name: str, names: set[str]) -> None:
            kind = registry[kind_name]
            targets = [t for n, t in self._profile.targets(kind.section).items() if n in names]
            async for facts in kind.gather(targets, ctx):
                deliver(kind_name, facts)

        await asyncio.gather(*(probe_kind(kind, names) for kind, names in self._wanted.items()))


def _probe_in_child(gatherer: Gatherer, write_end: int) -> NoReturn:
    status = 0
    try:
        with os.fdopen(write_end, "w", encoding="utf-8") as out:

            def send(kind: str, facts: Facts) -> None:
                out.write(json.dumps([kind, facts.model_dump(mode="json")]) + "\n")
                out.flush()

            try:
                asyncio.run(gatherer._probe_all(send))
            except BaseException as exc:
                out.write(json.dumps(["error", f"{type(exc).__name__}: {exc}"]) + "\n")
                status = 1
    finally:
        # _exit: no atexit handlers, no flushing of buffers inherited from pytest.
        os._exit(status)


def probe_all(profile: Profile, wanted: Mapping[str, set[str]]) -> FactsByKind:
    """Facts for the wanted targets of each kind, probed concurrently; returns when all are done."""
    return Gatherer(profile, wanted).start().all()


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
