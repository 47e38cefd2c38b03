"""Is a backup whole? One streamed pass over its bytes answers every `verify` method.

The object is read once, in chunks, and every verifier sees the same chunks: the
sha256 of the raw bytes, the gzip layer (decompressed into a bounded buffer, so a
1 GiB backup, or a gzip bomb, costs a few MiB of memory), and what pg_dump wrote
inside it (a plain dump's completion marker, or a custom archive fed to
`pg_restore`). Nothing is written to disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from opsproof.backup.plain_dump import PlainDumpFilter, UnsafeDump
from opsproof.errors import OpsproofError
from opsproof.local.postgres import ENV_BINDIR, LocalPgError, find_binaries

GZIP_MAGIC = b"\x1f\x8b"
PGDMP_MAGIC = b"PGDMP"
# The last line pg_dump writes to a plain-format dump it finished.
PLAIN_DUMP_END = b"-- PostgreSQL database dump complete"
_OUT_CHUNK = 1 << 20  # bound on decompressed bytes held at once


class CorruptBackup(OpsproofError):
    """The bytes are not what their format says; the message says where and why."""


class Gunzip:
    """Streaming gzip decompression with bounded output, across concatenated members.

    zlib checks each member's CRC-32 and length; a stream that ends inside a member
    is truncated. `feed` yields decompressed blocks of at most 1 MiB.
    """

    def __init__(self) -> None:
        self._inflate = zlib.decompressobj(wbits=31)
        self._in_member = False
        self.compressed = 0
        self.decompressed = 0
        self.members = 0

    def feed(self, data: bytes) -> Iterator[bytes]:
        self.compressed += len(data)
        while data:
            if not self._in_member:
                if not data.strip(b"\x00"):
                    return  # zero padding after the last member (tape and block devices add it)
                if not data.startswith(GZIP_MAGIC[: len(data)]):
                    where = "the file does not" if self.members == 0 else "trailing bytes after a member do not"
                    raise CorruptBackup(f"not gzip: {where} start with the gzip magic bytes 1f 8b")
                self._in_member = True
                self.members += 1
            try:
                block = self._inflate.decompress(data, _OUT_CHUNK)
            except zlib.error as exc:
                raise CorruptBackup(f"gzip data is corrupt near compressed byte {self.compressed}: {exc}") from None
            if block:
                self.decompressed += len(block)
                yield block
            if self._inflate.eof:
                # The member ended (CRC and length checked): what follows may be another member (pigz).
                data = self._inflate.unused_data
                self._inflate = zlib.decompressobj(wbits=31)
                self._in_member = False
            else:
                data = self._inflate.unconsumed_tail

    def finish(self) -> None:
        if self.members == 0:
            raise CorruptBackup("the file is empty")
        if self._in_member:
            raise CorruptBackup(f"gzip stream is truncated: it ends inside a member after {self.compressed} bytes")


def gunzip_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Decompress a gzip stream given in chunks; raise CorruptBackup when it is corrupt or truncated."""
    gunzip = Gunzip()
    for chunk in chunks:
        yield from gunzip.feed(chunk)
    gunzip.finish()


class _PlainDump:
    """A plain-format dump: pg_dump's header at the start, its completion marker at the end.

    Read through the drills' filter as well: a psql meta-command pg_dump never writes
    (`\\! <shell command>`) would run on the machine that restores the dump.
    """

    def __init__(self) -> None:
        self.head = b""
        self.tail = b""
        self.statements = PlainDumpFilter()
        self.unsafe: str | None = None

    def feed(self, block: bytes) -> None:
        if len(self.head) < 4096:
            self.head += block[: 4096 - len(self.head)]
        self.tail = (self.tail + block)[-4096:]
        if self.unsafe is None:
            try:
                self.statements.feed(block)
            except UnsafeDump as exc:
                self.unsafe = str(exc)

    def verdict(self) -> tuple[bool, str]:
        if b"PostgreSQL database dump" not in self.head:
            return False, "not a pg_dump plain dump: no '-- PostgreSQL database dump' header"
        if self.unsafe is not None:
            return False, f"{self.unsafe}: restoring it would run it"
        if PLAIN_DUMP_END not in self.tail:
            return False, "plain dump is incomplete: pg_dump's '-- PostgreSQL database dump complete' line is missing"
        return True, "plain dump ends with pg_dump's completion line"


class _Archive:
    """A custom-format archive fed to two pg_restore processes at once.

    `pg_restore --list` proves the table of contents reads; `pg_restore --file=/dev/null`
    reads every data block, which is what catches a truncated or corrupted archive
    (the table of contents sits at its start). Outputs go to temporary files, so a
    long listing can never fill a pipe and stall the feed.
    """

    def __init__(self, pg_restore: str) -> None:
        self.tool = pg_restore
        # Closed in verdict() or abort(), after the processes are done with them.
        self.outputs = [tempfile.TemporaryFile() for _ in range(4)]  # noqa: SIM115
        self.listing = subprocess.Popen(
            [pg_restore, "--list"], stdin=subprocess.PIPE, stdout=self.outputs[0], stderr=self.outputs[1]
        )
        self.reading = subprocess.Popen(
            [pg_restore, "--file=/dev/null"], stdin=subprocess.PIPE, stdout=self.outputs[2], stderr=self.outputs[3]
        )
        self.live = [self.listing, self.reading]

    def feed(self, block: bytes) -> None:
        for process in list(self.live):
            assert process.stdin is not None
            try:
                process.stdin.write(block)
            except BrokenPipeError:
                # --list stops reading after the table of contents; an error stops either early.
                self.live.remove(process)

    def verdict(self, timeout: float) -> tuple[bool, str, int | None]:
        codes: list[int | None] = []
        for process in (self.listing, self.reading):
            assert process.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
            try:
                codes.append(process.wait(timeout=max(timeout, 1.0)))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                codes.append(None)
        listing, listing_err, _, reading_err = (self._read(i) for i in range(4))
        for out in self.outputs:
            out.close()
        entries = sum(1 for line in listing.splitlines() if line and not line.startswith(";"))
        if None in codes:
            raise VerifyError("pg_restore did not finish within verify_timeout")
        if codes[0] != 0:
            return (*self._refused(listing_err, "pg_restore --list cannot read the archive"), None)
        if codes[1] != 0:
            return (*self._refused(reading_err, "pg_restore cannot read every data block"), entries)
        return True, f"pg_restore reads the table of contents ({entries} entries) and every data block", entries

    def _refused(self, stderr: str, what: str) -> tuple[bool, str]:
        first = next((line for line in stderr.splitlines() if line.strip()), "no message")
        if "unsupported version" in first:
            # A newer pg_dump's archive: our pg_restore cannot judge it, which says nothing of the backup.
            raise VerifyError(f"{self.tool} is too old for this archive ({first.strip()}); set {ENV_BINDIR}")
        return False, f"{what}: {first.strip()}"

    def _read(self, index: int) -> str:
        out = self.outputs[index]
        out.seek(0)
        return out.read(1 << 20).decode("utf-8", "replace")

    def abort(self) -> None:
        for process in (self.listing, self.reading):
            if process.poll() is None:
                process.kill()
                process.wait()
        for out in self.outputs:
            out.close()


class VerifyError(OpsproofError):
    """Verification could not run (no pg_restore, a too-old one, time ran out): an `error`, not a verdict."""


@dataclass
class Verdict:
    """What one pass over a backup found, per method."""

    sha256: str = ""
    bytes_read: int = 0
    decompressed_bytes: int | None = None
    format: str = "unknown"
    seconds: float = 0.0
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(result["ok"] for result in self.methods.values())


def pg_restore_tool() -> str:
    """pg_restore from the binaries localpg finds (the newest a pip install brings), else $PATH."""
    try:
        return str(find_binaries().pg_restore)
    except LocalPgError:
        found = shutil.which("pg_restore")
        if found is None:
            raise VerifyError(
                f"verify: pg_dump needs pg_restore: install pgserver or PostgreSQL's client, or set {ENV_BINDIR}"
            ) from None
        return found


def verify_stream(
    chunks: Iterable[bytes],
    methods: Sequence[str],
    *,
    expected_sha256: str | None = None,
    deadline: float | None = None,
) -> Verdict:
    """Read `chunks` once and judge every method; VerifyError when the judging itself cannot be done."""
    started = time.monotonic()
    verdict = Verdict()
    digest = hashlib.sha256()
    gunzip: Gunzip | None = None
    plain: _PlainDump | None = None
    archive: _Archive | None = None
    failure: dict[str, str] = {}
    first = True
    try:
        for chunk in chunks:
            if deadline is not None and time.monotonic() > deadline:
                raise VerifyError(f"reading took longer than verify_timeout ({verdict.bytes_read} bytes read)")
            verdict.bytes_read += len(chunk)
            digest.update(chunk)
            if first and chunk:
                first = False
                compressed = chunk.startswith(GZIP_MAGIC)
                gunzip = Gunzip() if compressed or "gzip" in methods else None
            content = [chunk]
            if gunzip is not None and "gunzip" not in failure:
                try:
                    content = list(gunzip.feed(chunk))
                except CorruptBackup as exc:
                    failure["gunzip"] = str(exc)
                    content = []
            if "pg_dump" in methods and content and plain is None and archive is None and "pg_dump" not in failure:
                if content[0].startswith(PGDMP_MAGIC):
                    archive = _Archive(pg_restore_tool())
                else:
                    plain = _PlainDump()
            for block in content:
                if archive is not None:
                    archive.feed(block)
                elif plain is not None:
                    plain.feed(block)
        if gunzip is not None and "gunzip" not in failure:
            try:
                gunzip.finish()
            except CorruptBackup as exc:
                failure["gunzip"] = str(exc)
        verdict.sha256 = digest.hexdigest()
        if gunzip is not None:
            verdict.decompressed_bytes = gunzip.decompressed
        verdict.format = ("gzip+" if gunzip is not None else "") + (
            "pg_dump custom" if archive is not None else "pg_dump plain" if plain is not None else "data"
        )
        if verdict.bytes_read == 0:
            failure["empty"] = "the backup is empty (0 bytes)"
        for method in methods:
            verdict.methods[method] = _judge(
                method, verdict, failure, gunzip, plain, archive, expected_sha256, deadline
            )
        archive = None
    finally:
        if archive is not None:
            archive.abort()
    verdict.seconds = round(time.monotonic() - started, 3)
    return verdict


def _judge(
    method: str,
    verdict: Verdict,
    failure: dict[str, str],
    gunzip: Gunzip | None,
    plain: _PlainDump | None,
    archive: _Archive | None,
    expected_sha256: str | None,
    deadline: float | None,
) -> dict[str, Any]:
    if "empty" in failure:
        return {"ok": False, "detail": failure["empty"]}
    if method == "sha256":
        if expected_sha256 is None:
            return {"ok": False, "detail": "no checksum to compare: no <name>.sha256 sidecar and no sha256 metadata"}
        if expected_sha256 != verdict.sha256:
            return {"ok": False, "detail": f"sha256 {verdict.sha256} does not match the recorded {expected_sha256}"}
        return {"ok": True, "detail": "sha256 matches the recorded checksum"}
    if method == "gzip":
        if "gunzip" in failure:
            return {"ok": False, "detail": failure["gunzip"]}
        assert gunzip is not None
        return {
            "ok": True,
            "detail": f"gzip decompresses whole ({gunzip.members} member(s), {gunzip.decompressed} bytes, CRC ok)",
        }
    # pg_dump: judged on the decompressed content; a broken gzip layer hides it.
    if "gunzip" in failure:
        return {"ok": False, "detail": f"cannot read the dump inside: {failure['gunzip']}"}
    if archive is not None:
        remaining = (deadline - time.monotonic()) if deadline is not None else 600.0
        ok, detail, entries = archive.verdict(remaining)
        return {"ok": ok, "detail": detail, "toc_entries": entries}
    if plain is not None:
        ok, detail = plain.verdict()
        return {"ok": ok, "detail": detail}
    return {"ok": False, "detail": "no content to judge"}
