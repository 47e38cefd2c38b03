"""S3 through moto's server on loopback, and backups staged in it the way production makes them.

The server runs in this process (a thread), so its backend objects are at hand:
`S3Server.backdate` moves an object's LastModified into the past, which is how a
test stages a stale backup or a missed day. Every request the server answers is
recorded (`S3Server.requests`), so tests can prove the checks only read.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
# werkzeug colours the lines of non-200 answers: an escape sequence may precede the method.
_REQUEST_LINE = re.compile(r'"(?:\x1b\[[0-9;]*m)*([A-Z]+) (\S+) HTTP')


class _RequestLog(logging.Handler):
    """werkzeug logs one line per request: keep (method, path) of each."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        found = _REQUEST_LINE.search(record.getMessage())
        if found:
            with self._lock:
                self.seen.append((found.group(1), found.group(2)))


@dataclass
class S3Server:
    url: str
    log: _RequestLog
    client: Any = field(repr=False)

    @property
    def requests(self) -> list[tuple[str, str]]:
        return list(self.log.seen)

    def backend_bucket(self, bucket: str) -> Any:
        from moto.s3.models import s3_backends

        return s3_backends[ACCOUNT]["global"].buckets[bucket]

    def backdate(self, bucket: str, key: str, age: timedelta) -> None:
        """Make `key` look written `age` ago (moto keeps naive UTC datetimes)."""
        when = (datetime.now(UTC) - age).replace(tzinfo=None)
        for version in self.backend_bucket(bucket).keys.getlist(key):
            version.last_modified = when

    def put(self, bucket: str, key: str, body: bytes, *, age: timedelta | None = None, **extra: Any) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=body, **extra)
        if age is not None:
            self.backdate(bucket, key, age)

    def bucket(
        self, name: str, *, versioning: bool = False, encryption: bool = False, object_lock: bool = False
    ) -> str:
        """A new empty bucket with the protections asked for."""
        self.client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)
        if versioning and not object_lock:  # Object Lock turns versioning on by itself
            self.client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        if encryption:
            self.client.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                },
            )
        return name

    def snapshot(self, bucket: str) -> dict[str, Any]:
        """Everything a check could change: every version of every object and the bucket's settings."""
        versions = self.client.list_object_versions(Bucket=bucket)
        state: dict[str, Any] = {
            "versions": sorted(
                (v["Key"], v["VersionId"], v["ETag"], v["Size"], v["LastModified"].isoformat())
                for v in versions.get("Versions", [])
            ),
            "delete_markers": sorted((m["Key"], m["VersionId"]) for m in versions.get("DeleteMarkers", [])),
            "versioning": self.client.get_bucket_versioning(Bucket=bucket).get("Status"),
            "tags": _or_none(lambda: self.client.get_bucket_tagging(Bucket=bucket)["TagSet"]),
            "policy": _or_none(lambda: self.client.get_bucket_policy(Bucket=bucket)["Policy"]),
            "acl": self.client.get_bucket_acl(Bucket=bucket)["Grants"],
        }
        return state


def _or_none(read: Any) -> Any:
    try:
        return read()
    except Exception:  # S3 answers "not configured" with an error reply
        return None


@contextlib.contextmanager
def moto_server() -> Iterator[tuple[str, _RequestLog, ThreadedMotoServer]]:
    """moto's server (every AWS service it has) on a loopback port, with fake credentials for boto3's chain."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        os.environ.setdefault(key, value)
    for key in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        os.environ.pop(key, None)
    log = _RequestLog()
    werkzeug = logging.getLogger("werkzeug")
    werkzeug.addHandler(log)
    werkzeug.setLevel(logging.INFO)
    werkzeug.propagate = False  # keep test output clean
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}", log, server
    finally:
        werkzeug.removeHandler(log)
        server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 on a loopback port, with fake credentials in the environment for boto3's chain."""
    with moto_server() as (url, log, _):
        yield S3Server(url, log, boto3.client("s3", endpoint_url=url, region_name=REGION))


@dataclass(frozen=True)
class Dumps:
    """Real pg_dump output of one small database: plain SQL and a custom-format archive."""

    plain: bytes
    custom: bytes

    @property
    def plain_gz(self) -> bytes:
        return gzip.compress(self.plain, mtime=0)


@pytest.fixture(scope="session")
def pg_dumps() -> Dumps:
    """Dumps made by pg_dump from a throwaway PostgreSQL (opsproof.local.postgres)."""
    from opsproof.local.postgres import local_postgres

    with local_postgres(max_connections=5) as pg:
        pg.execute(
            "create table projects (id int primary key, name text);"
            "insert into projects select g, 'project ' || g from generate_series(1, 500) g"
        )
        conninfo = pg.socket_conninfo()
        plain = subprocess.run([pg.binaries.pg_dump, "-d", conninfo], capture_output=True, check=True).stdout
        custom = subprocess.run([pg.binaries.pg_dump, "-Fc", "-d", conninfo], capture_output=True, check=True).stdout
    return Dumps(plain, custom)
