"""Probe every selected target once, concurrently and bounded, before the checks assert.

The plugin asks for facts the first time a check needs them; this module then
probes every target the selected checks use, all kinds together in one event
loop. Under pytest-xdist the first worker to ask probes for all workers and
shares the facts through a file, so `-n auto` still probes each target once.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opsproof.probes import Facts, ProbeContext, kinds
from opsproof.profile import Profile

# kind name -> target name -> facts
FactsByKind = dict[str, dict[str, Facts]]


def probe_all(profile: Profile, wanted: Mapping[str, set[str]]) -> FactsByKind:
    """Facts for the wanted targets of each kind, probed concurrently."""
    return asyncio.run(_probe_all(profile, wanted))


async def _probe_all(profile: Profile, wanted: Mapping[str, set[str]]) -> FactsByKind:
    ctx = ProbeContext(profile=profile, limit=asyncio.Semaphore(profile.defaults.concurrency))
    registry = kinds()
    names = [name for name in wanted if wanted[name]]
    results = await asyncio.gather(
        *(
            registry[name].gather(
                [
                    target
                    for target_name, target in profile.targets(registry[name].section).items()
                    if target_name in wanted[name]
                ],
                ctx,
            )
            for name in names
        )
    )
    return {name: dict(result) for name, result in zip(names, results, strict=True)}


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
