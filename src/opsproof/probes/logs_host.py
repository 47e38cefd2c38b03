"""A log file or the journal on a host, through a testinfra backend: one read command, bounded.

- a file: `stat -c %Y -- PATH` then `tail -c CAP+1 -- PATH` (its newest `limit_bytes`). A line
  in a file carries no time opsproof can trust, so the window is applied to the file as a
  whole: a file last modified before the window holds no line of it and counts nothing.
- the journal: `journalctl --no-pager --quiet --output=short-iso --since=@EPOCH [--unit=U]
  | head -c CAP+1` (the window's first `limit_bytes`).

Each runs in a worker thread under the item's deadline (`probes.hosts.thread_deadline`:
the command's whole process group is killed when it passes). Nothing is written.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from typing import Any

from opsproof.probes.host_output import excerpt
from opsproof.probes.hosts_session import CommandTimeout, testinfra_host, thread_deadline
from opsproof.probes.log_reading import LineCounter, LineSplitter, ReadDenied, ReadFailed, Reading
from opsproof.targets.hosts import parse_host_url
from opsproof.targets.logs import HostLogSource, LogsTarget

MTIME_MARK = "@@opsproof-mtime "


def command(settings: HostLogSource, within: float, limit_bytes: int, now: float) -> str:
    """The one read-only command sent to the host."""
    if settings.journal:
        unit = f" --unit={shlex.quote(settings.unit)}" if settings.unit else ""
        return (
            f"journalctl --no-pager --quiet --output=short-iso --since=@{int(now - within)}{unit}"
            f" | head -c {limit_bytes + 1}"
        )
    assert settings.path is not None
    path = shlex.quote(settings.path)
    return f"m=$(stat -c %Y -- {path}) && printf '{MTIME_MARK}%s\\n' \"$m\" && tail -c {limit_bytes + 1} -- {path}"


def _run(target: LogsTarget, timeout: float, counter: LineCounter, reading: Reading) -> None:
    settings = target.host
    assert settings is not None
    address = parse_host_url(settings.url)
    stream = settings.path or "journal"
    now = time.time()
    sent = command(settings, target.within, target.limit_bytes, now)
    with thread_deadline(address, timeout):
        try:
            host = testinfra_host(address, timeout)
        except Exception as exc:  # testinfra raises RuntimeError, ImportError... for an unusable backend
            raise ReadDenied(f"cannot use the {address.scheme} backend: {exc}") from None
        reading.calls += 1
        try:
            result = host.run(sent)
        except CommandTimeout:
            raise TimeoutError from None
        except Exception as exc:  # ssh's exit status 255, paramiko's errors
            raise ReadFailed(f"cannot run the read on {address.shown}: {excerpt(str(exc))}") from None
    output: bytes = result.stdout_bytes
    errors = excerpt(result.stderr_bytes.decode("utf-8", "replace"))
    if result.rc != 0 and not output.strip():
        _refused(result.rc, errors, settings)
    if not settings.journal:
        first, _, output = output.partition(b"\n")
        mtime = first.decode("ascii", "replace").removeprefix(MTIME_MARK).strip()
        if mtime.isdigit() and int(mtime) < now - target.within:
            reading.streams = 1
            reading.empty_reason = f"{settings.path} was last modified before the window"
            return
        if len(output) > target.limit_bytes:
            # tail gave the newest CAP+1 bytes: the oldest (first) line is the one the cap split.
            output = output[len(output) - target.limit_bytes :].partition(b"\n")[2]
            reading.cut.append(stream)
    elif len(output) > target.limit_bytes:
        output = output[: target.limit_bytes]
        reading.cut.append(stream)
    reading.streams = 1
    splitter = LineSplitter()
    counter.feed(splitter.add(output), stream)
    counter.feed(splitter.finish(cut=stream in reading.cut and settings.journal), stream)


def _refused(status: int, errors: str, settings: HostLogSource) -> Any:
    lowered = errors.lower()
    if "permission denied" in lowered or "sudo:" in lowered:
        raise ReadDenied(f"cannot read {settings.path or 'the journal'}: {errors} (use ?sudo=true in the URL?)")
    if "no such file" in lowered:
        raise ReadFailed(f"{settings.path} does not exist")
    if "not found" in lowered and settings.journal:
        raise ReadFailed(f"journalctl is not on the host: {errors}")
    raise ReadFailed(f"the read failed (exit status {status}): {errors or 'no message'}")


async def read_host_log(target: LogsTarget, timeout: float, counter: LineCounter, reading: Reading) -> None:
    await asyncio.to_thread(_run, target, timeout, counter, reading)
