"""A backup's bytes on their way to the restore: fetched ahead, recognised (gzip, custom, plain), decompressed."""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from opsproof.backup.deadline import deadline
from opsproof.backup.drill_steps import CancelToken, DrillError
from opsproof.backup.integrity import GZIP_MAGIC, PGDMP_MAGIC, CorruptBackup, Gunzip
from opsproof.backup.store import BackupStore, StoredObject, StoreError

READ_AHEAD_CHUNKS = 4  # chunks fetched ahead of the restore: S3 latency overlaps psql's work
HEAD_BYTES = 512
PLAIN_HEADER = b"-- PostgreSQL database dump"
CLUSTER_HEADER = b"-- PostgreSQL database cluster dump"


@dataclass
class Fetch:
    """What reading the stored object gave: its size and sha256 (complete only if read to the end)."""

    started: float = 0.0
    finished: float | None = None
    bytes_read: int = 0
    complete: bool = False
    _hash: Any = field(default_factory=hashlib.sha256, repr=False)

    @property
    def sha256(self) -> str | None:
        return self._hash.hexdigest() if self.complete else None


_END = object()


def read_ahead(
    chunks: Iterator[bytes], token: CancelToken, fetch: Fetch, until: float | None = None
) -> Iterator[bytes]:
    """The object's chunks, fetched (and hashed) by a thread up to READ_AHEAD_CHUNKS ahead.

    `until` (monotonic): the thread's S3 sockets are shut then, so a dripping answer ends with the drill.
    """
    ahead: queue.Queue[Any] = queue.Queue(maxsize=READ_AHEAD_CHUNKS)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        with deadline(until if until is not None else float("inf")):
            fetch_all()

    def fetch_all() -> None:
        fetch.started = time.time()
        try:
            for chunk in chunks:
                fetch._hash.update(chunk)
                fetch.bytes_read += len(chunk)
                if token.cancelled or not put(chunk):
                    return
            fetch.complete = True
            fetch.finished = time.time()
            put(_END)
        except BaseException as exc:  # handed to the consumer, which raises it in its own thread
            put(exc)
        finally:
            if fetch.finished is None:
                fetch.finished = time.time()
            close = getattr(chunks, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    thread = threading.Thread(target=produce, name="opsproof-drill-fetch", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = ahead.get(timeout=0.1)
            except queue.Empty:
                token.check("fetch")
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(1.0)  # a blocked S3 read ends at its own timeout; the thread is a daemon


@dataclass(frozen=True)
class BackupFormat:
    kind: Literal["plain", "custom"]
    gzip: bool

    @property
    def label(self) -> str:
        return self.kind + (".gz" if self.gzip else "")


_UNSUPPORTED = (
    (b"\x28\xb5\x2f\xfd", "zstd-compressed"),
    (b"\x04\x22\x4d\x18", "lz4-compressed"),
    (b"\xfd7zXZ\x00", "xz-compressed"),
    (b"BZh", "bzip2-compressed"),
    (b"PK\x03\x04", "a zip file"),
)


def inner_format(head: bytes, gzipped: bool) -> Literal["plain", "custom"]:
    """What pg_dump wrote, from the first bytes (after gzip); DrillError for anything else."""
    inside = " inside gzip" if gzipped else ""
    if not head:
        raise DrillError(f"the backup is empty{inside}", stage="fetch")
    if head.startswith(PGDMP_MAGIC):
        return "custom"
    if CLUSTER_HEADER in head[:HEAD_BYTES]:
        raise DrillError(
            f"the backup is a pg_dumpall cluster dump{inside}: a drill restores one database's pg_dump "
            "(plain SQL or custom format)",
            stage="fetch",
        )
    if PLAIN_HEADER in head[:HEAD_BYTES]:
        return "plain"
    for magic, what in _UNSUPPORTED:
        if head.startswith(magic):
            raise DrillError(
                f"the backup is {what}{inside}: drills restore plain SQL or custom format, optionally gzip",
                stage="fetch",
            )
    if len(head) > 262 and head[257:262] == b"ustar":
        raise DrillError(
            f"the backup is a tar archive{inside}: restore drills take plain SQL or custom format", stage="fetch"
        )
    first_line = head.split(b"\n", 1)[0][:60].decode("utf-8", "replace")
    raise DrillError(
        f"the backup is not a pg_dump plain or custom-format dump{inside} (it begins {first_line!r})", stage="fetch"
    )


def _peek(blocks: Iterator[bytes], size: int) -> tuple[bytes, Iterator[bytes]]:
    """The first `size` bytes of a stream of blocks, and the whole stream again."""
    taken: list[bytes] = []
    have = 0
    for block in blocks:
        taken.append(block)
        have += len(block)
        if have >= size:
            break
    head = b"".join(taken)

    def again() -> Iterator[bytes]:
        if head:
            yield head
        yield from blocks

    return head[:size], again()


def _decompressed(raw: Iterator[bytes], gunzip: Gunzip) -> Iterator[bytes]:
    for chunk in raw:
        yield from gunzip.feed(chunk)
    gunzip.finish()


def _corrupt(stream: Iterator[bytes]) -> Iterator[bytes]:
    """Turn a corrupt gzip stream into the drill's error (stage fetch)."""
    try:
        yield from stream
    except CorruptBackup as exc:
        raise DrillError(f"the backup is corrupt: {exc}", stage="fetch") from None


@dataclass
class OpenedBackup:
    """A backup whose first bytes were read (its format is known) and whose rest streams on demand."""

    format: BackupFormat
    blocks: Iterator[bytes]
    fetch: Fetch
    generators: list[Iterator[bytes]] = field(default_factory=list, repr=False)

    def close(self) -> None:
        """Stop reading: the fetching thread ends and the S3 body is closed. Idempotent."""
        for generator in (self.blocks, *reversed(self.generators)):
            close = getattr(generator, "close", None)
            if close is not None:
                with contextlib.suppress(ValueError):  # still running in another thread: it ends on its own
                    close()


def open_backup(
    store: BackupStore, obj: StoredObject, token: CancelToken, fetch: Fetch, until: float | None = None
) -> OpenedBackup:
    """Start reading the backup: its format from the first bytes, the rest streamed (DrillError when unusable).

    Called before the restore target is prepared, so a file that is no dump costs no cluster.
    """
    raw = _store_errors(read_ahead(store.chunks(obj), token, fetch, until))
    generators = [raw]
    try:
        first, raw = _peek(raw, len(GZIP_MAGIC))
        gzipped = first.startswith(GZIP_MAGIC)
        blocks = _corrupt(_decompressed(raw, Gunzip())) if gzipped else raw
        generators.append(blocks)
        head, blocks = _peek(blocks, HEAD_BYTES)
        return OpenedBackup(BackupFormat(inner_format(head, gzipped), gzipped), blocks, fetch, generators)
    except BaseException:
        OpenedBackup(BackupFormat("plain", False), raw, fetch, generators).close()
        raise


def _store_errors(stream: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield from stream
    except StoreError as exc:
        raise DrillError(
            f"reading the backup failed: {exc}", stage="fetch", misconfigured=exc.denied, timed_out=exc.timed_out
        ) from None
    except OSError as exc:
        raise DrillError(f"reading the backup failed: {exc.strerror or exc}", stage="fetch") from None
