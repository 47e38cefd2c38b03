"""Every backups and drills item ends at its deadline (issue 13 item 12), staged for real.

- A dripping proxy in front of moto's S3: it passes each request through and sends the
  answer back one byte every 0.25 s, so no single socket read ever waits past botocore's
  read_timeout. Before, a `timeout: 1s` item took 30 s; now it costs its timeout.
- A FIFO named like a backup in a `path:` folder: nobody ever writes to it, so opening
  it for reading would wait forever. It is refused, never opened.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from helpers.backup_servers import S3Server, s3_server

from conftest import Runner

__all__ = ["s3_server"]  # the session fixture, imported so pytest finds it here

DRIP_S = 0.25


def _pipe(source: socket.socket, sink: socket.socket, drip: bool, stop: threading.Event) -> None:
    try:
        while not stop.is_set():
            data = source.recv(65536)
            if not data:
                break
            if not drip:
                sink.sendall(data)
                continue
            for byte in data:  # one byte, then a pause: each read is short, the answer never ends
                if stop.is_set():
                    return
                sink.sendall(bytes([byte]))
                time.sleep(DRIP_S)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def dripping_proxy(s3_server: S3Server) -> Iterator[str]:
    """http://127.0.0.1:PORT: moto's S3 behind a proxy that drips every answer one byte at a time."""
    upstream = s3_server.url.removeprefix("http://").split(":")
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    opened: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection((upstream[0], int(upstream[1])))
            opened.extend((client, server))
            threading.Thread(target=_pipe, args=(client, server, False, stop), daemon=True).start()
            threading.Thread(target=_pipe, args=(server, client, True, stop), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()
        for sock in opened:
            sock.close()


def test_a_dripping_s3_costs_the_timeout_not_the_drip(runner: Runner, s3_server: S3Server, dripping_proxy: str) -> None:
    bucket = s3_server.bucket("bk-drip")
    for day in range(3):
        s3_server.put(bucket, f"db/scorpius_{day}.sql.gz", b"x" * 100, age=timedelta(days=day))
    runner.profile(
        "environment: test\nbackups:\n"
        f"  - {{name: drip, s3: {{bucket: {bucket}, prefix: db/, endpoint_url: '{dripping_proxy}'}}, "
        "pattern: 'scorpius_*.sql.gz', max_age: 2d, timeout: 1s}\n"
    )
    started = time.monotonic()
    run = runner.run("-m", "daily", "-k", "freshness")
    took = time.monotonic() - started
    record = run.record("backups.freshness[drip]")
    assert record["outcome"] == "failed", run.output
    assert record["message"] == "cannot list s3://bk-drip/db/: timed out after 1s (timeout)"
    assert record["observed"]["timed_out"] is True
    # 1 s plus a margin for a machine busy with other tests (the watchdog ticks every 50 ms); the drip
    # alone (~1 KB of XML at 4 bytes a second) would take minutes, and took 30 s before the fix.
    assert record["observed"]["elapsed_s"] < 2.5, record["observed"]
    assert took < 20, took


def test_a_drill_listing_through_a_dripping_s3_ends_at_its_deadline(
    runner: Runner, s3_server: S3Server, dripping_proxy: str
) -> None:
    bucket = s3_server.bucket("bk-drip-drill")
    s3_server.put(bucket, "db/scorpius_0.sql.gz", b"x" * 100)
    runner.profile(
        "environment: test\nbackups:\n"
        f"  - {{name: db, s3: {{bucket: {bucket}, prefix: db/, endpoint_url: '{dripping_proxy}'}}, "
        "pattern: 'scorpius_*.sql.gz', max_age: 2d, timeout: 1s}\n"
        "drills:\n  - {name: d, backup: db, rto: 1h, timeout: 1s}\n"
    )
    started = time.monotonic()
    run = runner.run("-m", "monthly", "-k", "restore")
    took = time.monotonic() - started
    record = run.record("drills.restore[d]")
    assert record["outcome"] == "failed", run.output
    assert "listing the backups failed" in record["message"] and "timed out" in record["message"], record["message"]
    assert took < 30, took


def test_a_fifo_named_like_a_backup_is_refused_never_opened(runner: Runner, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    folder.mkdir()
    (folder / "scorpius_1.sql.gz").write_bytes(b"old")
    os.mkfifo(folder / "scorpius_2.sql.gz")  # nobody writes to it: an open for reading would never return
    runner.profile(
        "environment: test\nbackups:\n"
        f"  - {{name: dir, path: '{folder}', pattern: 'scorpius_*.sql.gz', max_age: 2d, verify: [gzip], timeout: 2s}}\n"
    )
    started = time.monotonic()
    run = runner.run("-m", "daily", subprocess=True)
    took = time.monotonic() - started
    record = run.record("backups.freshness[dir]")
    assert record["outcome"] == "failed", run.output
    assert record["message"] == (
        f"cannot list {folder}: {folder / 'scorpius_2.sql.gz'} is not a regular file (a FIFO, device or socket): refused"
    )
    assert took < 60, took
