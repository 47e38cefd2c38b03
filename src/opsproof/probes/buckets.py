"""Buckets: per item, one listing (when usage is judged), its lifecycle rules and its protection, concurrently.

Every request goes through the backups kind's S3 client (`opsproof.backup.store`), which
refuses any operation that is not a read before it is sent. The listing stops at
`max_keys` keys or after `list_timeout` (each request inside `timeout`): what it counted
then is a part, and the facts say so, so no check judges a part as the whole. boto3 is
synchronous: each call runs in a thread, an item's calls side by side, so a bucket that
does not answer costs its timeout once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from pydantic import Field

from opsproof.backup.store import S3Store, StoreError
from opsproof.probes import Facts, ProbeContext, ProbeKind, each_as_done
from opsproof.targets.buckets import BucketsTarget


class BucketsFacts(Facts):
    location: str = Field(description="s3://bucket/prefix")
    usage: dict[str, Any] | None = Field(None, description="objects, bytes, complete, stopped, largest")
    lifecycle: list[dict[str, Any]] | None = Field(None, description="the lifecycle rules as configured")
    protection: dict[str, Any] | None = Field(None, description="versioning, encryption, Object Lock")
    errors: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per aspect that could not be read: message, denied, timed_out"
    )

    def observed(self) -> dict[str, Any]:
        # Each check shows what it judged.
        shown: dict[str, Any] = {"location": self.location, "reached": self.reached}
        for name in ("timed_out", "failure"):
            if getattr(self, name):
                shown[name] = getattr(self, name)
        shown["elapsed_s"] = round(self.elapsed_s, 4)
        return shown


def _usage(store: S3Store, item: BucketsTarget) -> dict[str, Any]:
    found = store.usage(item.max_keys, time.monotonic() + item.list_timeout)
    return {
        "objects": found.objects,
        "bytes": found.bytes,
        "complete": found.complete,
        "stopped": found.stopped,
        "largest": [{"key": key, "size": size} for size, key in found.largest],
    }


async def _read(facts: BucketsFacts, aspect: str, call: Callable[[], Any]) -> None:
    """One aspect's call in a thread; its answer, or its error in words, lands on the facts."""
    try:
        setattr(facts, aspect, await asyncio.to_thread(call))
        facts.reached = True
    except StoreError as exc:
        facts.errors[aspect] = {"message": str(exc), "denied": exc.denied, "timed_out": exc.timed_out}
    except PermissionError as exc:  # the client's own refusal to write: a bug, said loudly
        facts.errors[aspect] = {"message": str(exc), "denied": False, "timed_out": False}


async def _probe_one(item: BucketsTarget, ctx: ProbeContext) -> BucketsFacts:
    timeout = ctx.profile.timeout_of(item)
    facts = BucketsFacts(target=item.name, reached=False, location=item.location)
    started = time.monotonic()
    async with ctx.limit:
        store = S3Store(item.s3, timeout)
        reads = []
        if item.judges_usage:
            reads.append(_read(facts, "usage", lambda: _usage(store, item)))
        if item.lifecycle:
            reads.append(_read(facts, "lifecycle", store.lifecycle))
        if item.protection is not None:
            reads.append(_read(facts, "protection", store.protection))
        await asyncio.gather(*reads)
    if not facts.reached and facts.errors:  # nothing answered: the first error is the bucket's
        first = next(iter(facts.errors.values()))
        facts.failure, facts.timed_out = first["message"], first["timed_out"]
    facts.elapsed_s = time.monotonic() - started
    return facts


async def gather_buckets(targets: Sequence[BucketsTarget], ctx: ProbeContext) -> AsyncIterator[BucketsFacts]:
    """Read every item's bucket concurrently; yield each one's facts as it completes."""
    async for facts in each_as_done(_probe_one(t, ctx) for t in targets):
        yield facts


PROBE: ProbeKind[BucketsTarget, BucketsFacts] = ProbeKind(
    name="buckets",
    facts=BucketsFacts,
    gather=gather_buckets,
    imports=("boto3",),
)
