"""What a drill reads before it restores: the plain-dump filter (ownership, privileges, meta-commands,
COPY ... PROGRAM) and recognising a backup's format by its first bytes; no server.
"""

from __future__ import annotations

import gzip

import pytest
from helpers.drill_servers import (
    SLEEP_STATEMENT,
    DrillDumps,
    drill_dumps,
)

from opsproof.backup.drill_steps import DrillError
from opsproof.backup.integrity import PLAIN_DUMP_END
from opsproof.backup.opening import inner_format
from opsproof.backup.plain_dump import PlainDumpFilter, UnsafeDump

__all__ = ["drill_dumps"]  # session fixtures, found here by pytest


# -- the plain-dump filter and format detection (no server) ----------------------------------


def test_the_filter_leaves_out_exactly_ownership_and_privilege_statements(drill_dumps: DrillDumps) -> None:
    dump = drill_dumps.plain
    whole = PlainDumpFilter()
    out = whole.feed(dump) + whole.finish()
    removed = [line for line in dump.splitlines() if line not in out.splitlines()]
    assert removed, "the source database has owners and grants: something must be left out"
    assert all(
        line.startswith((b"GRANT ", b"ALTER DEFAULT PRIVILEGES "))
        or (line.startswith(b"ALTER ") and b" OWNER TO " in line)
        for line in removed
    ), removed
    assert whole.dropped == len(removed) == len(dump.splitlines()) - len(out.splitlines())
    # Statement-like lines that are not statements stay: a function body, a comment string, a COPY row.
    assert out.count(b"GRANT SELECT ON projects TO reader;") == 2
    assert b"GRANT ALL ON everything TO everyone;\n" in out
    assert PLAIN_DUMP_END in out


@pytest.mark.parametrize("size", [1, 3, 7, 64, 4093])
def test_the_filter_gives_the_same_output_whatever_the_chunks(drill_dumps: DrillDumps, size: int) -> None:
    # Lines, quotes and COPY terminators cut anywhere.
    dump = drill_dumps.plain
    whole = PlainDumpFilter()
    out = whole.feed(dump) + whole.finish()
    chunked = PlainDumpFilter()
    pieces = [chunked.feed(dump[i : i + size]) for i in range(0, len(dump), size)]
    assert b"".join(pieces) + chunked.finish() == out, size


def test_the_filter_leaves_out_what_pg_dump_create_and_restrict_add(drill_dumps: DrillDumps) -> None:
    created = PlainDumpFilter()
    out = created.feed(drill_dumps.created) + created.finish()
    removed = [line for line in drill_dumps.created.splitlines() if line not in out.splitlines()]
    database_lines = [line for line in removed if b"DATABASE" in line or line.startswith(b"\\")]
    assert [line.split(b" ")[0] + b" " + line.split(b" ")[1] for line in database_lines] == [
        b"CREATE DATABASE",
        b"ALTER DATABASE",
        b"\\connect app",
        b"COMMENT ON",
    ], database_lines
    fenced, plain = PlainDumpFilter(), PlainDumpFilter()
    fenced_out = fenced.feed(drill_dumps.restricted) + fenced.finish()
    plain_out = plain.feed(drill_dumps.plain) + plain.finish()
    assert b"restrict" not in fenced_out
    assert fenced_out.replace(b"\n", b"") == plain_out.replace(b"\n", b"")
    assert fenced.dropped == plain.dropped + 2


@pytest.mark.parametrize("command", [b"\\! touch /tmp/opsproof-owned", b"\\o /tmp/opsproof-out", b"\\i /etc/passwd"])
def test_any_other_meta_command_stops_the_restore(drill_dumps: DrillDumps, command: bytes) -> None:
    with pytest.raises(UnsafeDump) as raised:
        PlainDumpFilter().feed(drill_dumps.with_line(command))
    assert str(raised.value) == f"the dump holds a psql meta-command ({command.decode()!r}) that pg_dump never writes"


@pytest.mark.parametrize(
    "statement", [b"COPY notes FROM PROGRAM 'touch /tmp/opsproof-owned';", b"copy (select 1) to program 'sh';"]
)
def test_a_copy_that_runs_a_program_stops_the_restore(drill_dumps: DrillDumps, statement: bytes) -> None:
    with pytest.raises(UnsafeDump) as raised:
        PlainDumpFilter().feed(drill_dumps.with_line(statement))
    assert str(raised.value).startswith("the dump holds a COPY that runs a program (")


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"PGDMP\x01\x0f\x00", "custom"),
        (b"--\n-- PostgreSQL database dump\n--\n", "plain"),
        (b"--\n-- PostgreSQL database cluster dump\n--\n", "a pg_dumpall cluster dump"),
        (b"\x28\xb5\x2f\xfd\x00\x00", "zstd-compressed"),
        (b"x" * 257 + b"ustar\x0000", "a tar archive"),
        (b"hello world\n", "not a pg_dump plain or custom-format dump (it begins 'hello world')"),
        (b"", "the backup is empty"),
    ],
)
def test_formats_are_recognised_by_their_first_bytes(head: bytes, expected: str) -> None:
    if expected in ("custom", "plain"):
        assert inner_format(head, gzipped=False) == expected
        return
    with pytest.raises(DrillError) as raised:
        inner_format(head, gzipped=False)
    assert expected in str(raised.value)
    assert raised.value.stage == "fetch"


def test_the_slow_dump_is_real_pg_dump_output_with_one_statement_added(drill_dumps: DrillDumps) -> None:
    # The interrupt and timeout tests restore it: everything else in it is pg_dump's.
    assert drill_dumps.slow_plain.replace(SLEEP_STATEMENT, b"", 1) == drill_dumps.plain
    assert gzip.decompress(drill_dumps.plain_gz) == drill_dumps.plain
