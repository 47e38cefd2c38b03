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
import fcntl
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opsproof.probes import Facts, ProbeContext, kinds
from opsproof.profile import Profile

# kind name -> target name -> facts
FactsByKind = dict[str, dict[str, Facts]]


class Gatherer:
    """Probes the wanted targets of each kind on a background thread; `facts()` waits for one."""

    def __init__(self, profile: Profile, wanted: Mapping[str, set[str]]) -> None:
        self._profile = profile
        self._wanted = {kind: set(names) for kind, names in wanted.items() if names}
        self._facts: dict[tuple[str, str], Facts] = {}
        self._ready = {(kind, name): threading.Event() for kind, names in self._wanted.items() for name in names}
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="opsproof-probes", daemon=True)

    def start(self) -> Gatherer:
        self._thread.start()
        return self

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
            asyncio.run(self._probe_all())
        except BaseException as exc:  # handed to every check that waits: an `error` record each
            self._error = exc
        finally:
            for event in self._ready.values():
                event.set()

    async def _probe_all(self) -> None:
        ctx = ProbeContext(profile=self._profile, limit=asyncio.Semaphore(self._profile.defaults.concurrency))
        registry = kinds()

        async def probe_kind(kind_name: str, names: set[str]) -> None:
            kind = registry[kind_name]
            targets = [t for n, t in self._profile.targets(kind.section).items() if n in names]
            async for facts in kind.gather(targets, ctx):
                self._facts[(kind_name, facts.target)] = facts
                self._ready[(kind_name, facts.target)].set()

        await asyncio.gather(*(probe_kind(kind, names) for kind, names in self._wanted.items()))


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
