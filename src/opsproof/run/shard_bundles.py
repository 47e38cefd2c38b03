"""The shard bundles of a run, found, verified and matched with the shards the run expects.

Each shard bundle's manifest says `shard: {run, index, count, zone}` and its results.json
lists the items it owned. A run expects every index 0..N-1 of each partition a bundle
names (and of `--shards N`, when no bundle of it arrived at all). A shard is *complete*
when one of its bundles verifies (every file, and the signature with `--public-key`) and
its run was not cut short; a retried shard (Kubernetes' `backoffLimitPerIndex`) may have
left several bundles, and the newest one that verifies is the shard's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsproof.compliance import ComplianceError
from opsproof.evidence.manifest import MANIFEST, manifest_sha256
from opsproof.evidence.verify import verify_bundle
from opsproof.model.shards import Shard

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# A shard whose bundle has one of these statuses reported every check it owned.
_FINISHED = ("passed", "failed", "no_checks")


@dataclass
class ShardBundle:
    """One shard's bundle folder and what was found of it."""

    path: Path
    run_id: str
    shard: Shard
    problems: list[str] = field(default_factory=list)
    results: dict[str, Any] | None = None  # read once it verifies
    manifest_sha256: str = ""

    @property
    def status(self) -> str:
        return str((self.results or {}).get("run", {}).get("status") or "unknown")

    @property
    def finished_at(self) -> str:
        return str((self.results or {}).get("run", {}).get("finished_at") or "")


@dataclass
class ShardState:
    """One expected shard of the run: the bundle chosen for it (if any) and why it is incomplete."""

    shard: Shard
    bundle: ShardBundle | None = None
    others: list[ShardBundle] = field(default_factory=list)
    reason: str | None = None  # None: complete, every check it owned is in its bundle

    def as_dict(self) -> dict[str, Any]:
        """What the run's results.json says of this shard."""
        found: dict[str, Any] = {"index": self.shard.index, "count": self.shard.count, "zone": self.shard.zone}
        if self.bundle is not None:
            run = (self.bundle.results or {}).get("run", {})
            found |= {
                "bundle": self.bundle.path.name,
                "manifest_sha256": self.bundle.manifest_sha256,
                "status": self.bundle.status,
                "host": run.get("host"),
                "started_at": run.get("started_at"),
                "finished_at": run.get("finished_at"),
                "checks": len((self.bundle.results or {}).get("checks", [])),
            }
        found["reported"] = self.reason is None
        if self.reason is not None:
            found["problem"] = self.reason
        if self.others:
            found["other_bundles"] = [
                {"bundle": b.path.name, "problem": b.problems[0] if b.problems else f"superseded ({b.status})"}
                for b in self.others
            ]
        return found


def find_shard_bundles(folder: Path) -> list[ShardBundle]:
    """Every folder under `folder` whose manifest.json marks it as a shard of a run (not yet verified)."""
    found = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not path.is_dir() or path.name.startswith(".") or not (path / MANIFEST).is_file():
            continue
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            shard = manifest["shard"]
            found.append(ShardBundle(path, str(shard["run"]), Shard.from_dict(shard)))
        except (ValueError, KeyError, TypeError):
            continue  # not a shard bundle (or one whose manifest is unreadable: it names no run to join)
    return found


def discover_run(bundles: list[ShardBundle], given: str | None, sealed: set[str]) -> str:
    """The run to seal: `given`, else the one run with shard bundles here that is not sealed yet."""
    if given is not None:
        return given
    open_runs = sorted({b.run_id for b in bundles} - sealed)
    if len(open_runs) == 1:
        return open_runs[0]
    if not open_runs:
        raise ComplianceError("no shard bundles of an unsealed run here; give --run-id ID")
    raise ComplianceError(f"shard bundles of {len(open_runs)} runs are here ({', '.join(open_runs)}): give --run-id ID")


def verify_shards(bundles: list[ShardBundle], public_key: Ed25519PublicKey | None) -> None:
    """Verify each bundle (files, signature); read the results of those that verify."""
    for bundle in bundles:
        bundle.problems.extend(verify_bundle(bundle.path, public_key))
        if bundle.problems:
            continue
        bundle.manifest_sha256 = manifest_sha256(bundle.path)
        try:
            bundle.results = json.loads((bundle.path / "results.json").read_text())
        except (OSError, ValueError) as exc:
            bundle.problems.append(f"results.json is not readable: {exc}")


def expected_shards(bundles: list[ShardBundle], count: int | None) -> list[Shard]:
    """Every shard of each partition named by a bundle (or by `count`, for the zone-less partition)."""
    counts: dict[str | None, int] = {}
    if count is not None:
        counts[None] = count
    for bundle in bundles:
        zone, shards = bundle.shard.zone, bundle.shard.count
        if counts.setdefault(zone, shards) != shards:
            where = f"zone {zone}" if zone is not None else "the run"
            raise ComplianceError(
                f"{bundle.path.name}: shard {bundle.shard.index} of {shards}, but {where} has {counts[zone]} shards "
                "(--shards, or other shard bundles of this run): one run has one number of shards"
            )
    if None in counts and len(counts) > 1:
        zones = ", ".join(sorted(z for z in counts if z is not None))
        raise ComplianceError(
            f"the run mixes zone shards ({zones}) with shards of every zone: give every item a zone and "
            "run every runner with --zone, or run none with it (an item would be checked twice)"
        )
    return [Shard(index, n, zone) for zone, n in sorted(counts.items(), key=lambda z: z[0] or "") for index in range(n)]


def match_shards(expected: list[Shard], bundles: list[ShardBundle]) -> list[ShardState]:
    """Each expected shard with its newest bundle that verifies, and why it is incomplete (if it is)."""
    states = []
    for shard in expected:
        mine = [b for b in bundles if b.shard == shard]
        good = sorted((b for b in mine if not b.problems), key=lambda b: b.finished_at)
        chosen = good[-1] if good else None
        state = ShardState(shard, chosen, [b for b in mine if b is not chosen])
        if chosen is None and mine:
            state.reason = f"its bundle {mine[-1].path.name} does not verify ({mine[-1].problems[0]})"
        elif chosen is None:
            state.reason = "no bundle arrived"
        elif chosen.status not in _FINISHED:
            interrupted = (chosen.results or {}).get("run", {}).get("interrupted_by")
            state.reason = f"its run ended {chosen.status}" + (f" ({interrupted})" if interrupted else "")
        states.append(state)
    return states
