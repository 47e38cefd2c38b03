"""Facts for pytest-xdist workers: probed once, by the controller, and streamed to them as they come.

Under xdist the controller owns the run: it starts before the workers, so it forks the probe
processes as soon as the profile is loaded and probes a cron run's targets while the workers
start and collect. The first worker to finish collecting writes the targets its checks need
(`wanted.json`; every worker collects the same checks) and the controller asks the probe
processes for them. Each target's facts are appended to `facts.jsonl`, one JSON line, the
moment its probe is done; a worker reads the file as far as it has been written and waits
only for the target its check is about. The last line says no more will come, so a check
whose facts never came ends as an `error`, as it does in one process.

Both files are in a folder only this user can enter (`tempfile.mkdtemp`, 0700), created 0600,
and removed when the run ends. They hold what results.json will: facts already redacted by
the probe processes, and an error's message redacted here.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opsproof.errors import NoFacts, hide_plumbing
from opsproof.probes import Facts, kind_named
from opsproof.profile import Profile
from opsproof.run.gather import Gatherer

# pytest shows a check whose target has no facts by its message, not these frames (opsproof.errors.NoFacts).
__tracebackhide__ = hide_plumbing

SPOOL = "facts.jsonl"
WANTED = "wanted.json"
_END = b'["end", null]'
# A worker that finds its target's facts not yet written looks again after this, then twice
# as long, up to the longest: the first checks wait for the first probes (~0.1 s), and a
# check whose facts have just come starts at most a few milliseconds late.
_FIRST_PAUSE_S = 0.0005
_LONGEST_PAUSE_S = 0.005


class SpoolingGatherer(Gatherer):
    """The controller's gatherer: it keeps no facts; each goes to the spool as its probe ends."""

    def __init__(self, profile: Profile, spool: Path, **options: Any) -> None:
        super().__init__(profile, **options)
        # O_EXCL: a file that exists is not ours. O_APPEND: each line goes to the end in one write.
        self._out: int | None = os.open(spool, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        self._out_lock = threading.Lock()

    def _received(self, line: bytes) -> None:
        """A probe process's line, passed on as it came: the workers parse it, not the controller."""
        if line.startswith(b'["error"'):
            _, message = json.loads(line)
            line = json.dumps(["error", self._redactor.redact(str(message))]).encode()
        self._write(line)

    def _deliver(self, kind: str, facts: Facts) -> None:
        """Facts probed in a thread of this process (where it cannot fork), already redacted."""
        self._write(json.dumps([kind, facts.model_dump(mode="json")]).encode())

    def _release_waiters(self) -> None:
        super()._release_waiters()
        if self._error is not None:
            message = self._redactor.redact(f"{type(self._error).__name__}: {self._error}")
            self._write(json.dumps(["error", message]).encode())
        self._write(_END)
        with self._out_lock:
            if self._out is not None:
                os.close(self._out)
                self._out = None

    def _write(self, line: bytes) -> None:
        with self._out_lock:
            if self._out is None:
                return
            data = memoryview(line + b"\n")
            while data:
                data = data[os.write(self._out, data) :]


class SpoolReader:
    """A worker's side of the spool: one target's facts, as soon as the controller has written them."""

    def __init__(self, folder: Path) -> None:
        self._fd = os.open(folder / SPOOL, os.O_RDONLY)
        self._partial = b""  # the start of a line whose end is not written yet
        self._unasked: dict[tuple[str, str], bytes] = {}  # lines read, for checks not run yet (here or elsewhere)
        self._facts: dict[tuple[str, str], Facts] = {}
        self._error: str | None = None
        self._ended = False

    def facts(self, kind: str, name: str) -> Facts:
        """The facts of one target; waits until the controller has them (or has said they will not come)."""
        key = (kind, name)
        if key in self._facts:
            return self._facts[key]
        pause = _FIRST_PAUSE_S
        while key not in self._unasked:
            if self._read():
                continue
            if self._ended:
                if self._error is not None:
                    raise NoFacts(f"the probes failed: {self._error}")
                raise NoFacts(f"the {kind} probe returned no facts for {name!r}")
            time.sleep(pause)
            pause = min(pause * 2, _LONGEST_PAUSE_S)
        _, payload = json.loads(self._unasked.pop(key))
        found: Facts = kind_named(kind).facts.model_validate(payload)
        self._facts[key] = found
        return found

    def close(self) -> None:
        os.close(self._fd)

    def _read(self) -> bool:
        """Take in the lines written since the last read; False when there were none."""
        chunk = os.read(self._fd, 1 << 20)
        if not chunk:
            return False
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            kind, payload = json.loads(line)
            if kind == "end":
                self._ended = True
            elif kind == "error":
                self._error = str(payload)
            else:
                # Kept as the line (~0.5 KB), not parsed facts: half of them are other workers'.
                self._unasked[(kind, payload["target"])] = line
        return True


def write_wanted(folder: Path, wanted: Mapping[str, set[str]]) -> None:
    """A worker's collection: the targets, by kind, its checks need facts of."""
    final = folder / WANTED
    temporary = folder / f"{WANTED}.{os.getpid()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({kind: sorted(names) for kind, names in wanted.items()}, out)
    os.replace(temporary, final)  # whole or absent: the controller may read it at any moment


def read_wanted(folder: Path) -> dict[str, set[str]]:
    """What `write_wanted` wrote; nothing when no worker wrote it (none collected a check)."""
    try:
        raw: dict[str, list[str]] = json.loads((folder / WANTED).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return {kind: set(names) for kind, names in raw.items()}
