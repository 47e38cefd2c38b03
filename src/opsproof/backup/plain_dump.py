"""A plain pg_dump read statement by statement: what a drill feeds psql, and what it must not.

psql runs whatever it is fed, and a plain dump is fed to it: this filter decides what
reaches psql. Drills restore through it; the `backups` kind's integrity pass reads plain
dumps through it too, so a tampered backup is found the day it lands, not at the
monthly drill.
"""

from __future__ import annotations

import re

from opsproof.errors import OpsproofError


class UnsafeDump(OpsproofError):
    """A plain dump holds what pg_dump never writes and psql would run on this machine."""


_DROPPED_STARTS = (
    b"GRANT ",
    b"REVOKE ",
    b"ALTER DEFAULT PRIVILEGES ",
    b"SET SESSION AUTHORIZATION ",
    b"RESET SESSION AUTHORIZATION",
    # `pg_dump --create`: the database the dump came from, by its name. The drill restores
    # into its own database; these would create or alter another one (and CREATE DATABASE
    # cannot run inside the restore's transaction at all).
    b"CREATE DATABASE ",
    b"ALTER DATABASE ",
    b"COMMENT ON DATABASE ",
)
# The psql meta-commands pg_dump writes, left out: `\connect` (after --create's CREATE
# DATABASE: it would move the restore into that other database) and `\restrict` /
# `\unrestrict` (pg_dump 17.6, 16.10... fence the dump against meta-commands; an older psql
# stops at them, and the drill's filter enforces the same fence itself, below).
_DROPPED_META = (b"\\connect ", b"\\c ", b"\\restrict ", b"\\unrestrict ")


_DOLLAR_TAG = re.compile(rb"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


def _dollar_tag(line: bytes, at: int) -> bytes | None:
    """The `$tag$` opening a dollar quote at `at`, or None ($1 parameters, $ inside identifiers)."""
    before = line[at - 1 : at]
    if before and (before.isalnum() or before == b"_"):
        return None
    found = _DOLLAR_TAG.match(line, at)
    return found.group(0) if found else None


class PlainDumpFilter:
    """Streams a plain pg_dump through, leaving out ownership and privilege statements.

    Also left out: what `pg_dump --create` adds to name its own database (CREATE, ALTER
    and COMMENT ON DATABASE, `\\connect`), so such a dump restores into the drill's
    database like any other, and `\\restrict`/`\\unrestrict`. Any other psql meta-command
    raises UnsafeDump: pg_dump never writes one.

    Lines outside COPY data are followed with a small lexer (quotes, quoted identifiers,
    dollar quotes, comments), so a statement is only dropped where one begins: a `GRANT`
    line inside a function body or a multi-line comment string stays. COPY data, nearly
    all of a dump's bytes, is passed through by searching for its `\\.` terminator, never
    line by line.
    """

    def __init__(self) -> None:
        self._pending = b""
        self._in_copy = False
        self._quote: bytes | None = None  # b"'", b'"' or a $tag$ we are inside of
        self._at_start = True  # the next line begins a statement
        self.dropped = 0

    def feed(self, data: bytes) -> bytes:
        buf = self._pending + data if self._pending else data
        out: list[bytes] = []
        pos, size = 0, len(buf)
        while pos < size:
            if self._in_copy:
                found = buf.find(b"\n\\.\n", pos)
                if found == -1:
                    keep = max(pos, size - 3)  # a terminator may straddle two chunks
                    out.append(buf[pos:keep])
                    pos = keep
                    break
                out.append(buf[pos : found + 4])
                pos = found + 4
                self._in_copy, self._at_start = False, True
                continue
            newline = buf.find(b"\n", pos)
            if newline == -1:
                break
            line = buf[pos : newline + 1]
            if self._keep(line):
                if self._in_copy:  # the COPY line itself: its newline starts the search for `\.`
                    out.append(line[:-1])
                    pos = newline
                    continue
                out.append(line)
            pos = newline + 1
        self._pending = buf[pos:]
        return b"".join(out)

    def finish(self) -> bytes:
        rest, self._pending = self._pending, b""
        return rest

    def _keep(self, line: bytes) -> bool:
        if self._quote is None and self._at_start:
            text = line.strip()
            if not text or text.startswith(b"--"):
                return True  # a blank line, a comment: still between statements
            if text.startswith(b"\\"):
                return self._meta_command(text)
            if self._droppable(text):
                self.dropped += 1
                return False
            if text.upper().startswith(b"COPY ") and b" PROGRAM " in text.upper():
                # COPY ... FROM/TO PROGRAM runs a shell command as the server's OS user (the drill
                # restores as a superuser of its throwaway cluster); pg_dump writes COPY ... FROM stdin only.
                raise UnsafeDump(
                    f"the dump holds a COPY that runs a program ({_shown(text)!r}), which pg_dump never writes"
                )
            if text.startswith(b"COPY ") and text.endswith(b" FROM stdin;"):
                self._in_copy = True
                return True
        self._scan(line)
        return True

    def _meta_command(self, text: bytes) -> bool:
        """Leave out the meta-commands pg_dump writes; refuse any other, as a psql in restricted mode would.

        A plain dump is fed to psql, which would run `\\! <shell command>` or `\\o <file>` on
        this machine: a backup that holds one was not written by pg_dump, or was tampered with.
        """
        if (text + b" ").startswith(_DROPPED_META):
            self.dropped += 1
            return False
        raise UnsafeDump(f"the dump holds a psql meta-command ({_shown(text)!r}) that pg_dump never writes")

    def _droppable(self, text: bytes) -> bool:
        ownership = text.startswith(b"ALTER ") and b" OWNER TO " in text
        if not (ownership or text.startswith(_DROPPED_STARTS)) or not text.endswith(b";"):
            return False
        # One whole statement on this line: nothing opened and left open (pg_dump writes them so).
        saved = self._quote, self._at_start
        self._scan(text + b"\n")
        whole = self._quote is None and self._at_start
        self._quote, self._at_start = saved
        return whole

    def _scan(self, line: bytes) -> None:
        """Follow quotes through one line; note whether it ends a statement."""
        i, size = 0, len(line)
        code_end = size  # where a trailing -- comment starts
        while i < size:
            if self._quote is not None:
                end = line.find(self._quote, i)
                if end == -1:
                    i = size
                    break
                i = end + len(self._quote)
                self._quote = None
                continue
            ch = line[i : i + 1]
            if ch in (b"'", b'"'):
                self._quote = ch
                i += 1
            elif ch == b"$":
                tag = _dollar_tag(line, i)
                if tag is not None:
                    self._quote = tag
                    i += len(tag)
                else:
                    i += 1
            elif ch == b"-" and line[i : i + 2] == b"--":
                code_end = i
                break
            else:
                i += 1
        self._at_start = self._quote is None and line[:code_end].rstrip().endswith(b";")


def _shown(line: bytes) -> str:
    """The start of a refused line, for the message (enough to find it in the dump)."""
    return line[:60].decode("utf-8", "replace")
