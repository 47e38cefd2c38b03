"""Shards of one run: which profile items a runner probes, and the run they belong to.

`--shard I/N` (0-based) takes the items whose stable hash of kind and name falls on I, so
an item stays on its shard when others are added; `--shard auto` reads I from
`JOB_COMPLETION_INDEX` (a Kubernetes Indexed Job sets it) and N from `OPSPROOF_SHARDS`.
`--zone NAME` takes the items labelled `zone: NAME` (a database reachable only from its
VPC is probed from a runner inside it); with `--shard`, that zone's share of them.
Every shard of one run carries the run's id (`--run-id`, `$OPSPROOF_RUN_ID`), so
`opsproof seal-run` can make one run of their bundles::

    shard_of("http", "wallet-guard", 4)   # -> the same index on every machine, every day
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opsproof.errors import OpsproofError

INDEX_VARIABLE = "JOB_COMPLETION_INDEX"
COUNT_VARIABLE = "OPSPROOF_SHARDS"
RUN_ID_VARIABLE = "OPSPROOF_RUN_ID"
# A run id goes into folder names, S3 keys and SQL rows: a Job's uid (a UUID) or anything as plain.
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_ZONE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
MAX_SHARDS = 10_000


class ShardError(OpsproofError, ValueError):
    """A bad --shard, --zone or --run-id (or the variables behind them): a usage error."""


def shard_of(kind: str, name: str, count: int) -> int:
    """The shard an item belongs to among `count`: sha256 of `kind/name`, never Python's salted hash()."""
    digest = hashlib.sha256(f"{kind}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class Shard:
    """Which items this runner owns: index/count of the hash partition, within a zone or not."""

    index: int = 0
    count: int = 1
    zone: str | None = None

    def owns(self, kind: str, name: str, zone: str | None) -> bool:
        if self.zone is not None and zone != self.zone:
            return False
        return self.count == 1 or shard_of(kind, name, self.count) == self.index

    @property
    def label(self) -> str:
        """`shard 1 of 4`, `zone eu-1`, `zone eu-1 shard 1 of 4`: how messages name it."""
        parts = [f"zone {self.zone}"] if self.zone is not None else []
        if self.count > 1 or self.zone is None:
            parts.append(f"shard {self.index} of {self.count}")
        return " ".join(parts)

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.zone or "", self.index, self.count)

    @property
    def folder_suffix(self) -> str:
        """What a shard bundle's folder name ends with, so the shards of one run never collide."""
        zone = f"-zone-{re.sub(r'[^A-Za-z0-9_.-]', '_', self.zone)}" if self.zone is not None else ""
        return f"{zone}-shard{self.index}of{self.count}"

    def as_dict(self, run_id: str, items: Mapping[str, Iterable[str]]) -> dict[str, Any]:
        """What results.json and manifest.json say of the shard: which, of which run, and its items."""
        return {
            "run": run_id,
            "index": self.index,
            "count": self.count,
            "zone": self.zone,
            "items": {kind: sorted(names) for kind, names in sorted(items.items()) if names},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Shard:
        return cls(index=int(data["index"]), count=int(data["count"]), zone=data.get("zone"))


def parse_shard(text: str | None, zone: str | None, environ: Mapping[str, str]) -> Shard | None:
    """`--shard I/N|auto` and `--zone NAME` -> the Shard this runner is, or None for a whole run."""
    if zone is not None and not _ZONE.match(zone):
        raise ShardError(f"--zone {zone!r}: expected a zone name (letters, digits and _ . : -)")
    if text is None:
        return Shard(zone=zone) if zone is not None else None
    if text.strip() == "auto":
        index_text, count_text = environ.get(INDEX_VARIABLE), environ.get(COUNT_VARIABLE)
        if index_text is None:
            raise ShardError(f"--shard auto: ${INDEX_VARIABLE} is not set (a Kubernetes Indexed Job sets it)")
        if count_text is None:
            raise ShardError(f"--shard auto: ${COUNT_VARIABLE} is not set (the number of shards, e.g. 4)")
        index = _number(index_text, f"${INDEX_VARIABLE}")
        count = _number(count_text, f"${COUNT_VARIABLE}")
        shown = f"--shard auto (${INDEX_VARIABLE}={index_text}, ${COUNT_VARIABLE}={count_text})"
    else:
        found = re.fullmatch(r"\s*(\S+)\s*/\s*(\S+)\s*", text)
        if found is None:
            raise ShardError(f"--shard {text!r}: expected I/N (0-based, e.g. 0/4) or auto")
        index, count = _number(found[1], "--shard's I"), _number(found[2], "--shard's N")
        shown = f"--shard {text!r}"
    if not 1 <= count <= MAX_SHARDS:
        raise ShardError(f"{shown}: the number of shards must be 1 to {MAX_SHARDS}")
    if not 0 <= index < count:
        raise ShardError(f"{shown}: the index must be 0 to {count - 1} (shards are numbered from 0)")
    return Shard(index, count, zone)


def parse_run_id(given: str | None, environ: Mapping[str, str]) -> str | None:
    """`--run-id`, else `$OPSPROOF_RUN_ID`; None when neither is set."""
    source = "--run-id"
    if given is None:
        given, source = environ.get(RUN_ID_VARIABLE) or None, f"${RUN_ID_VARIABLE}"
    if given is None:
        return None
    if not _RUN_ID.match(given):
        raise ShardError(f"{source} {given!r}: expected letters, digits and _ . - (up to 128, e.g. a Job's uid)")
    return given


def _number(text: str, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ShardError(f"{what} {text!r} is not a whole number") from None
