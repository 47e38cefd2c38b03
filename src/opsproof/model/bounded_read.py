"""Reading a file a user named, safely: a regular file only, and never more than a stated size.

A FIFO would block the run forever, `/dev/zero` would fill its memory, a folder would give
a confusing error: each is refused with a message before any byte is read::

    data = read_regular_file(Path("/dev/zero"), 1024)   # UnreadableFile: not a regular file
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from opsproof.errors import OpsproofError

KIB = 1024
MIB = 1024 * KIB


class UnreadableFile(OpsproofError):
    """Why a file cannot be read, in words to follow its name ("not a regular file (a FIFO)")."""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a file"


def _size(size: int) -> str:
    return f"{size / MIB:.1f} MiB" if size >= MIB else f"{size / KIB:.1f} KiB" if size >= KIB else f"{size} bytes"


def read_regular_file(path: Path | str, limit: int) -> bytes:
    """The bytes of `path`, a regular file of at most `limit` bytes; UnreadableFile otherwise."""
    try:
        # O_NONBLOCK: opening a FIFO with no writer would otherwise wait for one, forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UnreadableFile("no such file") from None
    except OSError as exc:
        raise UnreadableFile(f"cannot read it: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnreadableFile(f"not a regular file ({_kind(mode)})")
        size = os.fstat(fd).st_size
        if size > limit:
            raise UnreadableFile(f"{_size(size)}, more than the {_size(limit)} it may be")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:  # it grew while we looked
            raise UnreadableFile(f"more than the {_size(limit)} it may be")
        return data
    except OSError as exc:
        raise UnreadableFile(f"cannot read it: {exc.strerror}") from None
    finally:
        os.close(fd)
