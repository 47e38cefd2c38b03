"""Where backups live: an S3 bucket (boto3) or a directory, read and never written.

Both stores answer the same questions: which objects match the item's pattern (with
size and time), a stream of one object's bytes, a small sidecar's text, and, for S3,
what the bucket enforces. The S3 client refuses, before anything is sent, every
operation not in `S3_READ_OPERATIONS`: the read-only promise is a lock in the code,
not a convention. Calls are synchronous (boto3 is); probes run them in threads.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from opsproof.backup.deadline import track_connections
from opsproof.errors import OpsproofError

if TYPE_CHECKING:
    from opsproof.targets.backups import BackupsTarget, S3Location

CHUNK = 1 << 20  # 1 MiB: big enough for zlib and sha256 to run at full speed, small for memory
SIDECAR_SUFFIX = ".sha256"
# Every S3 operation a check may make; anything else raises before a request is built.
S3_READ_OPERATIONS = frozenset(
    {
        "ListObjectsV2",
        "HeadObject",
        "GetObject",
        "GetBucketVersioning",
        "GetBucketEncryption",
        "GetObjectLockConfiguration",
        "GetBucketLifecycleConfiguration",
    }
)
# S3Store has a method named list: its annotations name the builtin through this alias.
LifecycleRules = list[dict[str, Any]]
LARGEST_KEPT = 10  # the largest objects a usage listing names (runbook 003: "identify large files")


_TOO_MANY = "narrow the prefix, path or pattern, or raise max_listed"


class StoreError(OpsproofError):
    """The store could not be read; the message says why in words (no bucket, denied, timed out)."""

    def __init__(self, message: str, *, denied: bool = False, timed_out: bool = False) -> None:
        super().__init__(message)
        self.denied = denied
        self.timed_out = timed_out


@dataclass
class BucketUsage:
    """What one listing of a bucket (or a prefix) adds up to; `stopped` says why it is a part, not the whole."""

    objects: int = 0
    bytes: int = 0
    stopped: str | None = None  # None: every key was listed
    largest: list[tuple[int, str]] = field(default_factory=list)  # (size, key), largest first

    @property
    def complete(self) -> bool:
        return self.stopped is None


@dataclass(frozen=True)
class StoredObject:
    """One backup: its name relative to the prefix or path, and what the listing says of it."""

    name: str
    key: str  # the full S3 key or the absolute path
    size: int
    modified: float  # POSIX seconds: S3 LastModified, or the file's mtime
    etag: str | None = None


class BackupStore(Protocol):
    location: str

    def list(self, pattern: str, limit: int) -> list[StoredObject]:
        """Objects whose name matches `pattern`, oldest first; StoreError past `limit` listed."""
        ...

    def chunks(self, obj: StoredObject) -> Iterator[bytes]:
        """The object's bytes in chunks of at most CHUNK, streamed (never read whole)."""
        ...

    def sidecar(self, obj: StoredObject) -> str | None:
        """The text of `<name>.sha256` next to the object (at most 4 KiB), or None when there is none."""
        ...

    def metadata(self, obj: StoredObject) -> dict[str, str]:
        """User metadata of the object (S3 x-amz-meta-*); a directory has none."""
        ...


def matches(name: str, pattern: str) -> bool:
    # A sidecar is never a backup, unless the pattern asks for sidecars.
    if name.endswith(SIDECAR_SUFFIX) and not pattern.endswith(SIDECAR_SUFFIX):
        return False
    return fnmatch.fnmatchcase(name, pattern)


@dataclass
class DirectoryStore:
    """Backups in a local or mounted directory, subdirectories included."""

    root: Path
    location: str = ""

    def __post_init__(self) -> None:
        self.location = str(self.root)

    def list(self, pattern: str, limit: int) -> list[StoredObject]:
        if not self.root.is_dir():
            what = "is not a directory" if self.root.exists() else "does not exist"
            raise StoreError(f"{self.root} {what}")
        found: list[StoredObject] = []
        seen = 0
        try:
            for folder, _dirs, files in os.walk(self.root, onerror=_raise):
                for file_name in files:
                    path = Path(folder) / file_name
                    name = path.relative_to(self.root).as_posix()
                    seen += 1
                    if seen > limit:
                        raise StoreError(f"more than {limit} files under {self.root}: {_TOO_MANY}")
                    if not matches(name, pattern):
                        continue
                    found_stat = path.stat()
                    if not stat.S_ISREG(found_stat.st_mode):
                        # A FIFO would block the reader forever, a device never end: refused, never opened.
                        raise StoreError(f"{path} is not a regular file (a FIFO, device or socket): refused")
                    found.append(StoredObject(name, str(path), found_stat.st_size, found_stat.st_mtime))
        except PermissionError as exc:
            raise StoreError(f"cannot read {exc.filename}: permission denied", denied=True) from None
        except OSError as exc:
            raise StoreError(f"cannot read {exc.filename or self.root}: {(exc.strerror or str(exc)).lower()}") from None
        return sorted(found, key=lambda o: (o.modified, o.name))

    def chunks(self, obj: StoredObject) -> Iterator[bytes]:
        with _open_regular(obj.key) as handle:
            while block := handle.read(CHUNK):
                yield block

    def sidecar(self, obj: StoredObject) -> str | None:
        path = Path(obj.key + SIDECAR_SUFFIX)
        try:
            with _open_regular(str(path)) as handle:
                return str(handle.read(4096).decode("utf-8", "replace"))
        except FileNotFoundError:
            return None

    def metadata(self, obj: StoredObject) -> dict[str, str]:
        return {}


@contextlib.contextmanager
def _open_regular(path: str) -> Iterator[Any]:
    """A file opened for reading only if it is a regular file (checked on the open descriptor: no race)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO swapped in must not block the open
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StoreError(f"{path} is not a regular file (a FIFO, device or socket): refused")
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        yield handle


def _raise(error: OSError) -> None:
    raise error


class _Clients:
    """One boto3 client per (endpoint, region, timeout): creating one costs ~50 ms and they are thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[tuple[str | None, str | None, float], Any] = {}

    def get(self, location: S3Location, timeout: float) -> Any:
        key = (location.endpoint_url, location.region, timeout)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = _new_client(location, timeout)
            return self._clients[key]


def _new_client(location: S3Location, timeout: float) -> Any:
    return read_only_client("s3", location.endpoint_url, location.region, timeout, S3_READ_OPERATIONS, "a backup store")


def read_only_client(
    service: str, endpoint_url: str | None, region: str | None, timeout: float, reads: frozenset[str], what: str
) -> Any:
    """A boto3 client that refuses, before sending, every operation but `reads`; one attempt per call."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        # No retries: a target that does not answer within its timeout has failed (the
        # contract), and a black hole must cost that timeout, not botocore's five of them.
        retries={"total_max_attempts": 1, "mode": "standard"},
        user_agent_extra="opsproof",
    )
    client = boto3.session.Session().client(service, endpoint_url=endpoint_url, region_name=region, config=config)

    def refuse_writes(model: Any, **_: Any) -> None:
        if model.name not in reads:
            raise PermissionError(f"opsproof never writes to {what}: {model.name} refused")

    client.meta.events.register(f"before-call.{client.meta.service_model.service_id.hyphenize()}", refuse_writes)
    track_connections(client)  # so that a deadline (opsproof.backup.deadline) can cut a dripping answer
    return client


CLIENTS = _Clients()


@dataclass
class S3Store:
    """Backups under a prefix of an S3 bucket (AWS or any S3-compatible endpoint)."""

    s3: S3Location
    timeout: float
    location: str = ""
    client: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.location = f"s3://{self.s3.bucket}/{self.s3.prefix}"
        self.client = CLIENTS.get(self.s3, self.timeout)

    def list(self, pattern: str, limit: int) -> list[StoredObject]:
        found: list[StoredObject] = []
        seen = 0
        prefix = self.s3.prefix
        with s3_errors(self.location):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.s3.bucket, Prefix=prefix):
                for entry in page.get("Contents", ()):
                    seen += 1
                    if seen > limit:
                        raise StoreError(f"more than {limit} objects under {self.location}: {_TOO_MANY}")
                    name = entry["Key"][len(prefix) :]
                    if name and matches(name, pattern):
                        found.append(
                            StoredObject(
                                name,
                                entry["Key"],
                                int(entry["Size"]),
                                entry["LastModified"].timestamp(),
                                entry.get("ETag", "").strip('"') or None,
                            )
                        )
        return sorted(found, key=lambda o: (o.modified, o.name))

    def chunks(self, obj: StoredObject) -> Iterator[bytes]:
        with s3_errors(f"s3://{self.s3.bucket}/{obj.key}"):
            # IfMatch: a backup replaced while we read is reported, not silently mixed.
            extra = {"IfMatch": f'"{obj.etag}"'} if obj.etag else {}
            body = self.client.get_object(Bucket=self.s3.bucket, Key=obj.key, **extra)["Body"]
            try:
                yield from body.iter_chunks(CHUNK)
            finally:
                body.close()

    def sidecar(self, obj: StoredObject) -> str | None:
        from botocore.exceptions import ClientError

        key = obj.key + SIDECAR_SUFFIX
        with s3_errors(f"s3://{self.s3.bucket}/{key}"):
            try:
                body = self.client.get_object(Bucket=self.s3.bucket, Key=key, Range="bytes=0-4095")["Body"]
            except ClientError as exc:
                if _code(exc) in ("NoSuchKey", "404"):
                    return None
                raise
            try:
                return bytes(body.read()).decode("utf-8", "replace")
            finally:
                body.close()

    def metadata(self, obj: StoredObject) -> dict[str, str]:
        with s3_errors(f"s3://{self.s3.bucket}/{obj.key}"):
            head = self.client.head_object(Bucket=self.s3.bucket, Key=obj.key)
        meta: dict[str, str] = head.get("Metadata", {})
        if head.get("ChecksumSHA256"):
            meta = {**meta, "x-amz-checksum-sha256": head["ChecksumSHA256"]}
        return meta

    def usage(self, max_keys: int, deadline: float) -> BucketUsage:
        """Objects and bytes under the prefix, listing until `max_keys` keys or the monotonic `deadline`."""
        import heapq

        found = BucketUsage()
        largest: list[tuple[int, str]] = []
        with s3_errors(self.location):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.s3.bucket, Prefix=self.s3.prefix):
                for entry in page.get("Contents", ()):
                    if found.objects >= max_keys:
                        found.stopped = f"max_keys {max_keys:,} reached"
                        break
                    size = int(entry["Size"])
                    found.objects += 1
                    found.bytes += size
                    heapq.heappush(largest, (size, entry["Key"]))
                    if len(largest) > LARGEST_KEPT:
                        heapq.heappop(largest)
                if found.stopped is None and page.get("IsTruncated") and time.monotonic() >= deadline:
                    found.stopped = "list_timeout reached"
                if found.stopped is not None:
                    break
        found.largest = sorted(largest, reverse=True)
        return found

    def lifecycle(self) -> LifecycleRules:
        """The bucket's lifecycle rules as configured ([] when it has none)."""
        from botocore.exceptions import ClientError

        with s3_errors(f"s3://{self.s3.bucket}"):
            try:
                rules = self.client.get_bucket_lifecycle_configuration(Bucket=self.s3.bucket)["Rules"]
            except ClientError as exc:
                if _code(exc) == "NoSuchLifecycleConfiguration":
                    return []
                raise
        return [_rule(rule) for rule in rules]

    def protection(self) -> dict[str, Any]:
        """What the bucket enforces: versioning status, default encryption, Object Lock."""
        from botocore.exceptions import ClientError

        bucket = self.s3.bucket
        seen: dict[str, Any] = {}
        with s3_errors(f"s3://{bucket}"):
            seen["versioning"] = self.client.get_bucket_versioning(Bucket=bucket).get("Status") or "Disabled"
            try:
                rules = self.client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
                seen["encryption"] = [r["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in rules]
            except ClientError as exc:
                if _code(exc) != "ServerSideEncryptionConfigurationNotFoundError":
                    raise
                seen["encryption"] = []
            try:
                lock = self.client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
                seen["object_lock"] = lock.get("ObjectLockEnabled") or "Disabled"
                retention = lock.get("Rule", {}).get("DefaultRetention")
                if retention:
                    seen["object_lock_default_retention"] = retention
            except ClientError as exc:
                if _code(exc) != "ObjectLockConfigurationNotFoundError":
                    raise
                seen["object_lock"] = "Disabled"
        return seen


def _rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A lifecycle rule as `mc ilm ls` lists it: id, status, scope, expiry and transitions."""
    scope = rule.get("Filter", {}).get("Prefix", rule.get("Prefix", ""))
    shown: dict[str, Any] = {"id": rule.get("ID", ""), "status": rule.get("Status", ""), "prefix": scope}
    if "Expiration" in rule:
        shown["expiration"] = {k: str(v) for k, v in rule["Expiration"].items()}
    if rule.get("Transitions"):
        shown["transitions"] = [{k: str(v) for k, v in step.items()} for step in rule["Transitions"]]
    if "NoncurrentVersionExpiration" in rule:
        shown["noncurrent_expiration"] = {k: str(v) for k, v in rule["NoncurrentVersionExpiration"].items()}
    if "AbortIncompleteMultipartUpload" in rule:
        shown["abort_incomplete_multipart"] = {k: str(v) for k, v in rule["AbortIncompleteMultipartUpload"].items()}
    return shown


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


# AWS's error codes for credentials or permissions refused (S3's, and the JSON APIs' such as CloudWatch Logs).
DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "403",
        "AllAccessDisabled",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
    }
)


@contextlib.contextmanager
def s3_errors(where: str) -> Iterator[None]:
    """Turn botocore's exceptions into a StoreError that says why in words (S3's, and CloudWatch Logs')."""
    from botocore import exceptions as bx

    try:
        yield
    except bx.ClientError as exc:
        code = _code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = exc.response.get("Error", {}).get("Message") or code
        if code == "NoSuchBucket":
            raise StoreError(f"{where}: the bucket does not exist") from None
        if code in DENIED_CODES:
            raise StoreError(f"{where}: access denied ({code}: {message})", denied=True) from None
        if code in ("PreconditionFailed", "412"):
            raise StoreError(f"{where}: the object changed while it was read") from None
        raise StoreError(f"{where}: {code or status}: {message}") from None
    except bx.NoCredentialsError:
        raise StoreError(
            f"{where}: no AWS credentials (boto3's chain: environment, shared config, instance role)", denied=True
        ) from None
    except (bx.ConnectTimeoutError, bx.ReadTimeoutError):
        raise StoreError(f"{where}: timed out", timed_out=True) from None
    except bx.EndpointConnectionError as exc:
        raise StoreError(f"{where}: cannot connect to {exc.kwargs.get('endpoint_url')}") from None
    except bx.BotoCoreError as exc:
        raise StoreError(f"{where}: {exc}") from None


def store_for(item: BackupsTarget, timeout: float) -> DirectoryStore | S3Store:
    if item.s3 is not None:
        return S3Store(item.s3, timeout)
    assert item.path is not None
    return DirectoryStore(item.path)
