"""Write one evidence bundle: a new folder with every format, then seal it."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsproof.evidence.html import render_html
from opsproof.evidence.junit import junit_chunks
from opsproof.evidence.manifest import seal
from opsproof.evidence.results_json import json_chunks
from opsproof.model.results import Results, Run
from opsproof.model.shards import Shard
from opsproof.redaction import Redactor

if TYPE_CHECKING:
    from opsproof.evidence.chain_head import ChainHead
    from opsproof.evidence.premade import Premade
    from opsproof.evidence.signing import Signer

# Each format as the pieces it is written in: results.json and junit.xml one check at a time. Each
# renderer takes the checks' pieces made ahead, if any (`evidence.premade`).
RENDERERS: dict[str, Callable[[Results, Premade | None], Iterable[str]]] = {
    "results.json": json_chunks,
    "junit.xml": junit_chunks,
    "report.html": lambda results, premade: (render_html(results, premade),),
}


# What a forked child writes when `write_bundle` is asked to (`in_child`): report.html, the longest to
# make; this process writes the two written a check at a time, then does its `meanwhile` (the history).
BESIDE = ("report.html",)
# The longest the process waits for that child after its own files (10,000 checks take ~0.45 s of CPU).
CHILD_WAIT_S = 60.0


def _write_files(
    bundle: Path, results: Results, redactor: Redactor, names: Iterable[str], premade: Premade | None = None
) -> None:
    for name in names:
        _write_file(bundle / name, RENDERERS[name](results, premade), redactor)


def _write_file(path: Path, chunks: Iterable[str], redactor: Redactor) -> None:
    """One new file, written as it is made, one piece (one check's lines) at a time, each piece redacted."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        for chunk in chunks:
            out.write(redactor.redact(chunk, short=False))


def _start_child(work: Callable[[], None]) -> int | None:
    """Fork a child that does `work` and exits 0 (1 if it raised); its pid, or None where there is no fork."""
    if not hasattr(os, "fork"):
        return None
    try:
        pid = os.fork()
    except OSError:
        return None
    if pid == 0:  # the child: never back into pytest, whatever happens
        code = 1
        try:
            work()
            code = 0
        finally:
            os._exit(code)
    return pid


def _finished(pid: int) -> bool:
    """Reap the child; True when it exited 0. One that outlives CHILD_WAIT_S is killed (False).

    Bounded because a fork copies other threads' locks: a child stuck on one must not hang the
    run; its files are then written here, as when it fails.
    """
    deadline = time.monotonic() + CHILD_WAIT_S
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status) == 0
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return False
            time.sleep(min(0.002, left))  # this process wrote its files meanwhile: the wait is short
    except ChildProcessError:
        return False


def bundle_path(run: Run, report_dir: Path) -> Path:
    """Where a run's bundle goes: `<report-dir>/<environment>-<started, compact>-<run id[:8]>[-shard<I>of<N>]`."""
    stamp = re.sub(r"[-:]|\.\d+", "", run.started_at)  # 20261124T104500Z
    environment = re.sub(r"[^A-Za-z0-9_.-]", "_", run.environment)
    suffix = Shard.from_dict(run.shard.dump()).folder_suffix if run.shard is not None else ""
    return report_dir / f"{environment}-{stamp}-{run.id[:8]}{suffix}"


def write_bundle(
    results: Results,
    report_dir: Path,
    redactor: Redactor,
    signer: Signer | None = None,
    extra_files: Mapping[str, str] | None = None,
    *,
    head: ChainHead | None = None,
    shards: list[dict[str, Any]] | None = None,
    redacted_already: bool = False,
    in_child: bool = False,
    meanwhile: Callable[[Path], None] | None = None,
    premade: Premade | None = None,
) -> Path:
    """Every format, plus `extra_files` (notifications.json), redacted, then sealed together (`manifest.seal`).

    `redacted_already`: `results` is `Results.redacted(redactor)`'s copy (the run's, made once for
    the writers and the signals), so the first pass below is not made again.
    `in_child`: report.html is rendered by a forked child while this process writes results.json
    and junit.xml, then calls `meanwhile(bundle)` (at 10,000 checks ~0.45 s of CPU in the child,
    ~0.3 s here and ~0.14 s for the history's rows: on two cores the bundle takes the longer,
    not the sum). The files are the same; a child that fails leaves its file to this process.
    Only for a process that is its own (the plugin's run as a command): a fork copies every
    thread's locks, and a library embedding pytest may hold one. `meanwhile` must not raise;
    it runs before the bundle is sealed, with every file but the child's written.
    `premade`: the checks' pieces made as each check ended (`evidence.premade`); the writers join
    them instead of making them, for the records they were made of. The files are the same.
    """
    run = results.run
    report_dir.mkdir(parents=True, exist_ok=True)
    bundle = bundle_path(run, report_dir)
    bundle.mkdir()
    # The last pass: the free text redacted before any format escapes it; the pass over each rendered
    # file is a second line of defence, for secrets long enough never to be mistaken for a word or an outcome.
    # Each file is written as it is made, one piece (one check's lines) at a time, and each piece is
    # redacted as it goes: a 10,000-check bundle never holds a whole file, nor a redacted copy of one.
    # A piece holds whole records, so a secret in a record is always inside one piece.
    if not redacted_already:
        results = results.redacted(redactor)  # new records: no piece made ahead is used for them
    beside = _start_child(lambda: _write_files(bundle, results, redactor, BESIDE, premade)) if in_child else None
    try:
        own = [name for name in RENDERERS if beside is None or name not in BESIDE]
        _write_files(bundle, results, redactor, own, premade)
        if meanwhile is not None:
            meanwhile(bundle)
    finally:
        written = beside is not None and _finished(beside)
    if beside is not None and not written:  # the child failed (or could not start): written here, as without one
        for name in BESIDE:
            (bundle / name).unlink(missing_ok=True)
        _write_files(bundle, results, redactor, BESIDE, premade)
    for name, text in (extra_files or {}).items():
        _write_file(bundle / name, (text,), redactor)
    seal(bundle, run.dump(), signer, head, shards)
    return bundle
