"""The demo's backups: a week of real pg_dump output in an S3 bucket, and weekly archives on disk.

- `scorpius-backups` (S3, moto's server on loopback): eight nightly gzipped plain dumps of
  the demo database with `.sha256` sidecars, one a day, the newest two hours old, in a bucket
  with versioning, default encryption and Object Lock (runbook 000: daily backup to S3,
  keep 30 days; 003: daily gzipped pg_dump). Every backups check passes on it, and the
  monthly drill restores its newest.
- a directory of weekly custom-format archives (runbook 004: weekly backups) whose newest
  is whole but holds the schema only, a fraction of the size of the ones before: the size
  check warns, as it would when a table was emptied before the dump.

The S3 credentials are moto's fake ones, handed to boto3's chain through the environment.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import os
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from opsproof.local.postgres import LocalPostgres

BUCKET = "scorpius-backups"
PREFIX = "db/"
NIGHTS = 8
WEEKS = 4
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class DemoBackups:
    endpoint: str
    folder: Path
    environ: dict[str, str] = field(default_factory=lambda: dict(FAKE_CREDENTIALS))

    @property
    def plain_vars(self) -> dict[str, str]:
        return {"DEMO_S3": self.endpoint, "DEMO_BACKUP_DIR": str(self.folder)}

    @property
    def line(self) -> str:
        return (
            f"backups in s3://{BUCKET}/{PREFIX} at {self.endpoint} and weekly archives in {self.folder} "
            "(the newest weekly archive holds no rows)"
        )


def _dump(pg: LocalPostgres, *options: str) -> bytes:
    done = subprocess.run(
        [str(pg.binaries.pg_dump), *options, "-d", pg.socket_conninfo(dbname="app")],
        capture_output=True,
        check=True,
    )
    return done.stdout


def _stage_bucket(client: Any, server_backend: Any, plain_dump: bytes, now: datetime) -> None:
    client.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
    default = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    client.put_bucket_encryption(Bucket=BUCKET, ServerSideEncryptionConfiguration={"Rules": [default]})
    body = gzip.compress(plain_dump, mtime=0)
    checksum = hashlib.sha256(body).hexdigest()
    for night in range(NIGHTS):
        written = now - timedelta(days=night, hours=2)
        name = f"scorpius_{written:%Y%m%d}.sql.gz"
        for key, data in ((name, body), (f"{name}.sha256", f"{checksum}  {name}\n".encode())):
            client.put_object(Bucket=BUCKET, Key=PREFIX + key, Body=data)
            # Backdated through moto's backend: a week of nightly backups, made in a second.
            for version in server_backend.buckets[BUCKET].keys.getlist(PREFIX + key):
                version.last_modified = written.replace(tzinfo=None)


def _stage_folder(folder: Path, custom_dump: bytes, schema_only: bytes, now: datetime) -> None:
    for week in range(WEEKS):
        written = now - timedelta(weeks=week, hours=3)
        path = folder / f"scorpius_week_{written:%G-%V}.dump"
        # The newest is whole but holds no rows (as if a job dumped before a restore finished):
        # the kind of shrink the size check is there to notice, which integrity cannot.
        path.write_bytes(schema_only if week == 0 else custom_dump)
        os.utime(path, (written.timestamp(), written.timestamp()))


@contextmanager
def serve_demo_backups(pg: LocalPostgres | Callable[[], LocalPostgres]) -> Iterator[DemoBackups]:
    """Start moto's S3 on loopback, fill the bucket and the folder from `pg`'s `app` database.

    `pg` may be a callable that waits for the database: moto's server (and its imports)
    then start while PostgreSQL does, and only the dumps wait for it.
    """
    import boto3
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    now = datetime.now(UTC)
    with ExitStack() as stack:
        # werkzeug logs every request moto serves to stderr (coloured on a terminal), over the demo's own lines.
        quiet = logging.getLogger("werkzeug")
        stack.callback(quiet.setLevel, quiet.level)
        quiet.setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        stack.callback(_stop_moto, server, (host, port))
        endpoint = f"http://{host}:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, **_credentials())
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="opsproof-demo-backups-")))
        database = pg if isinstance(pg, LocalPostgres) else pg()
        # Three pg_dump processes at once: each waits mostly on the server, not on us.
        with ThreadPoolExecutor(3, thread_name_prefix="opsproof-demo-dump") as pool:
            plain, custom, schema_only = pool.map(
                lambda options: _dump(database, *options), [(), ("-Fc",), ("-Fc", "--schema-only")]
            )
        _stage_bucket(client, s3_backends["123456789012"]["global"], plain, now)
        _stage_folder(folder, custom, schema_only, now)
        yield DemoBackups(endpoint=endpoint, folder=folder)


def _stop_moto(server: Any, address: tuple[str, int]) -> None:
    """Stop moto's server now, not at the next half-second poll of its serving loop.

    socketserver's loop looks for a shutdown request only after a request or its 0.5 s poll
    timeout: a connection wakes it (again, until the stop is through: one may come before
    the request does).
    """
    stopping = threading.Thread(target=server.stop, name="opsproof-demo-moto-stop")
    stopping.start()
    while stopping.is_alive():
        with contextlib.suppress(OSError), socket.create_connection(address, timeout=0.5):
            pass
        stopping.join(0.02)


def _credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": FAKE_CREDENTIALS["AWS_DEFAULT_REGION"],
    }
