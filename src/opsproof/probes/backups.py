"""Backups: list each item's store once, read its newest backup once, every item concurrently.

Per item: one listing (S3 ListObjectsV2 pages, or a directory walk); when `verify`
is set, one streamed read of the newest backup that every method judges (see
`opsproof.backup.integrity`), plus its `.sha256` sidecar or metadata; when
`protection` is set, the bucket's versioning, encryption and Object Lock settings.
boto3 is synchronous, so each item's calls run in a thread; integrity reads are
CPU-bound (decompression, pg_restore) and run at most one per core at a time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import re
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from pydantic import Field

from opsproof.backup.deadline import deadline
from opsproof.backup.integrity import VerifyError, verify_stream
from opsproof.backup.store import BackupStore, S3Store, StoredObject, StoreError, store_for
from opsproof.probes import Facts, ProbeContext, ProbeKind, each_as_done, utc_iso
from opsproof.redaction import Redactor
from opsproof.targets.backups import BackupsTarget

SERIES_SHOWN = 8  # the newest and the seven before it: what the size-drop rule compares
_HEX64 = re.compile(r"\b([0-9a-fA-F]{64})\b")


class BackupsFacts(Facts):
    location: str = Field(description="s3://bucket/prefix or the directory")
    pattern: str
    denied: str | None = Field(None, description="credentials or permissions refused: checks cannot run")
    count: int = Field(0, description="backups matching the pattern")
    listed_at: float | None = Field(None, description="POSIX time the listing was taken (ages are measured from it)")
    # Every matching backup's time, oldest first: retention and gaps are judged on them.
    modified: list[float] = Field(default_factory=list)
    recent: list[dict[str, Any]] = Field(
        default_factory=list, description="the newest backups, newest last: name, size, modified"
    )
    oldest: dict[str, Any] | None = None
    integrity: dict[str, Any] | None = Field(None, description="the verdict of each verify method on the newest")
    integrity_error: str | None = Field(None, description="why the integrity of the newest could not be judged")
    protection: dict[str, Any] | None = None
    protection_error: str | None = None

    @property
    def newest(self) -> dict[str, Any] | None:
        return self.recent[-1] if self.recent else None

    def observed(self) -> dict[str, Any]:
        # The timestamps of every backup would drown the record: each check shows what it judged.
        shown: dict[str, Any] = {"location": self.location, "pattern": self.pattern, "reached": self.reached}
        for name in ("timed_out", "failure", "denied"):
            if getattr(self, name):
                shown[name] = getattr(self, name)
        if self.reached and not self.denied:
            shown["count"] = self.count
            if self.newest is not None:
                shown["newest"] = _shown(self.newest)
        shown["elapsed_s"] = round(self.elapsed_s, 4)
        return shown


def _shown(obj: dict[str, Any]) -> dict[str, Any]:
    return {**obj, "modified": utc_iso(obj["modified"])}


def _entry(obj: StoredObject) -> dict[str, Any]:
    return {"name": obj.name, "size": obj.size, "modified": obj.modified}


def expected_checksum(sidecar: str | None, metadata: dict[str, str]) -> tuple[str | None, str | None]:
    """The recorded sha256 (hex) and where it came from: the sidecar, then object metadata."""
    if sidecar is not None:
        found = _HEX64.search(sidecar)
        return (found.group(1).lower(), "sidecar") if found else (None, "sidecar without a sha256 hex digest")
    for key in ("sha256", "checksum-sha256", "x-amz-checksum-sha256"):
        value = metadata.get(key)
        if not value:
            continue
        if _HEX64.fullmatch(value.strip()):
            return value.strip().lower(), f"metadata {key}"
        try:  # S3's own checksum is the base64 of the digest
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(raw) == 32:
            return raw.hex(), f"metadata {key}"
    return None, None


def _list(store: BackupStore, item: BackupsTarget, facts: BackupsFacts) -> list[StoredObject]:
    listed = store.list(item.pattern, item.max_listed)
    facts.listed_at = time.time()
    facts.count = len(listed)
    facts.modified = [o.modified for o in listed]
    facts.recent = [_entry(o) for o in listed[-SERIES_SHOWN:]]
    facts.oldest = _entry(listed[0]) if listed else None
    return listed


def _survey(
    store: BackupStore, item: BackupsTarget, facts: BackupsFacts, timeout: float, redactor: Redactor
) -> list[StoredObject]:
    """The listing, and the bucket's protection when asked for, within the item's one deadline."""
    with deadline(time.monotonic() + timeout) as watch:
        try:
            listed = _list(store, item, facts)
            facts.reached = True
            if item.protection is not None and isinstance(store, S3Store):
                try:
                    facts.protection = store.protection()
                except StoreError as exc:
                    if watch.expired:
                        raise
                    facts.protection_error = redactor.redact(str(exc))
        except StoreError:
            if watch.expired:  # the deadline cut the socket: say so, not what the cut looked like
                raise StoreError(f"timed out after {timeout:g}s (timeout)", timed_out=True) from None
            raise
    return listed


def _verify(
    store: BackupStore, item: BackupsTarget, newest: StoredObject, facts: BackupsFacts, redactor: Redactor
) -> None:
    limit = item.verify_timeout
    with deadline(time.monotonic() + limit) as watch:
        try:
            expected = source = None
            if "sha256" in item.verify:
                sidecar = store.sidecar(newest)
                expected, source = expected_checksum(sidecar, store.metadata(newest) if sidecar is None else {})
            verdict = verify_stream(store.chunks(newest), item.verify, expected_sha256=expected, deadline=watch.at)
        except (StoreError, VerifyError, OSError) as exc:
            cut = f"timed out after {limit:g}s (verify_timeout)"
            facts.integrity_error = cut if watch.expired else redactor.redact(str(exc))
            return
    facts.integrity = {
        "name": newest.name,
        "ok": verdict.ok,
        "sha256": verdict.sha256,
        "bytes_read": verdict.bytes_read,
        "decompressed_bytes": verdict.decompressed_bytes,
        "format": verdict.format,
        "seconds": verdict.seconds,
        "methods": verdict.methods,
        **({"checksum_source": source} if source else {}),
    }


async def _probe_one(item: BackupsTarget, ctx: ProbeContext, reading: asyncio.Semaphore) -> BackupsFacts:
    timeout = ctx.profile.timeout_of(item)
    facts = BackupsFacts(target=item.name, reached=False, location=item.location, pattern=item.pattern)
    started = time.monotonic()
    try:
        async with ctx.limit:
            store = store_for(item, timeout)
            # Making the client (boto3's import the first time: seconds on a busy machine) is not the
            # target's time: elapsed_s and the deadline start when the first request can be sent.
            started = time.monotonic()
            listed = await asyncio.to_thread(_survey, store, item, facts, timeout, ctx.redactor)
        if item.verify and listed:
            async with reading:
                await asyncio.to_thread(_verify, store, item, listed[-1], facts, ctx.redactor)
    except StoreError as exc:
        facts.failure = ctx.redactor.redact(str(exc))
        facts.timed_out = exc.timed_out
        if exc.denied:
            facts.denied = facts.failure
    except PermissionError as exc:  # the client's own refusal to write: a bug, said loudly
        facts.failure = ctx.redactor.redact(str(exc))
    facts.elapsed_s = time.monotonic() - started
    return facts


async def gather_backups(targets: Sequence[BackupsTarget], ctx: ProbeContext) -> AsyncIterator[BackupsFacts]:
    """List every item's store concurrently; yield each one's facts as it completes."""
    reading = asyncio.Semaphore(max(1, os.cpu_count() or 1))
    async for facts in each_as_done(_probe_one(t, ctx, reading) for t in targets):
        yield facts


PROBE: ProbeKind[BackupsTarget, BackupsFacts] = ProbeKind(
    name="backups",
    facts=BackupsFacts,
    gather=gather_backups,
    # boto3 is imported when an S3 store is first used: a directory-only profile never pays
    # its ~30 MiB, which keeps a verify run under its memory budget.
)
