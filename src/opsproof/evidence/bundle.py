"""Write one evidence bundle: a new folder with every format, then seal it."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsproof.evidence.ahead import Ahead, reap
from opsproof.evidence.junit import junit_chunks
from opsproof.evidence.manifest import seal
from opsproof.evidence.results_json import json_chunks
from opsproof.model.results import Results, Run
from opsproof.model.shards import Shard
from opsproof.redaction import Redactor

if TYPE_CHECKING:
    from opsproof.evidence.chain_head import ChainHead
    from opsproof.evidence.signing import Signer


def _page(results: Results) -> Iterable[str]:
    # Imported here: a run's process hands report.html to a process forked ahead (`start_renderer`),
    # which imports the page's modules and jinja2 itself; the run's own process need not load them.
    from opsproof.evidence.html import render_html

    return (render_html(results),)


# Each format as the pieces it is written in: results.json and junit.xml one check at a time.
RENDERERS: dict[str, Callable[[Results], Iterable[str]]] = {
    "results.json": json_chunks,
    "junit.xml": junit_chunks,
    "report.html": _page,
}


# What another process writes when `write_bundle` is asked to (`renderer`, `in_child`): report.html, the
# longest to make; this process writes the two written a check at a time, then does its `meanwhile` (the history).
BESIDE = ("report.html",)
# The longest the process waits for that child after its own files (10,000 checks take ~0.45 s of CPU).
CHILD_WAIT_S = 60.0


def _write_files(bundle: Path, results: Results, redactor: Redactor, names: Iterable[str]) -> None:
    for name in names:
        _write_file(bundle / name, RENDERERS[name](results), redactor)


def _write_file(path: Path, chunks: Iterable[str], redactor: Redactor) -> None:
    """One new file, written as it is made, one piece (one check's lines) at a time, each piece redacted."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        for chunk in chunks:
            out.write(redactor.redact(chunk, short=False))


def start_renderer() -> Ahead | None:
    """A process forked now that loads what renders BESIDE, to render it when `write_bundle` hands it the results.

    None where it cannot fork (see `Ahead.start`). Its owner passes it to `write_bundle(renderer=...)`,
    or dismisses it (`Ahead.dismiss`) when the run writes no bundle.
    """
    return Ahead.start(_load_renderers, _render_handed)


def hand_document(renderer: Ahead, document: Mapping[str, Any], report_dir: Path, redactor: Redactor) -> None:
    """Hand the renderer the results document as plain data, before this process has validated it.

    The run's end (`run.results.build_results`) calls it as soon as the document's parts are
    known: the renderer validates and redacts its copy (`Results.model_validate(document)
    .redacted(redactor)`, as the run does with its own) while the run does the same, instead of
    waiting for the run's models and their pickle. `write_bundle(renderer=...)` then only waits
    for it. Should the document not pickle, the renderer is dismissed and the page made as without it.
    """
    bundle = bundle_path(Run.model_validate(document["run"]), report_dir)
    renderer.hand((bundle, document, redactor, True))


def _load_renderers() -> None:
    from opsproof.evidence.html import load_template

    load_template()


def _render_handed(payload: tuple[Path, Any, Redactor, bool]) -> None:
    bundle, document, redactor, plain = payload
    results: Results = Results.model_validate(document).redacted(redactor) if plain else document
    # Handed ahead of the bundle (`hand_document`), the folder may not be made yet: `write_bundle` makes it next.
    deadline = time.monotonic() + CHILD_WAIT_S
    while not bundle.is_dir():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{bundle} was never made")
        time.sleep(0.001)
    _write_files(bundle, results, redactor, BESIDE)


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
    """Reap the child; True when it exited 0. One that outlives CHILD_WAIT_S is killed (False): its files are then
    written here."""
    return reap(pid, CHILD_WAIT_S)


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
    renderer: Ahead | None = None,
    meanwhile: Callable[[Path], None] | None = None,
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
    `renderer`: a process forked ahead by `start_renderer`, which has the page's modules loaded
    already; it is handed the results and renders as that child would (the same files, the same
    fallback). When it cannot take them, a child is forked as with `in_child`, if asked for.
    """
    run = results.run
    report_dir.mkdir(parents=True, exist_ok=True)
    bundle = bundle_path(run, report_dir)
    try:
        bundle.mkdir()
    except BaseException:
        if renderer is not None:  # handed the document already (`hand_document`): it must not write into that folder
            renderer.dismiss()
        raise
    # The last pass: the free text redacted before any format escapes it; the pass over each rendered
    # file is a second line of defence, for secrets long enough never to be mistaken for a word or an outcome.
    # Each file is written as it is made, one piece (one check's lines) at a time, and each piece is
    # redacted as it goes: a 10,000-check bundle never holds a whole file, nor a redacted copy of one.
    # A piece holds whole records, so a secret in a record is always inside one piece.
    if not redacted_already:
        results = results.redacted(redactor)
    if renderer is not None and renderer.waiting:
        renderer.hand((bundle, results, redactor, False))
    child: Callable[[], bool] | None = None
    if renderer is not None and renderer.working:  # handed its work here, or the document before (`hand_document`)
        child = partial(renderer.finish, CHILD_WAIT_S)
    elif in_child and (pid := _start_child(lambda: _write_files(bundle, results, redactor, BESIDE))) is not None:
        child = partial(_finished, pid)
    try:
        _write_files(bundle, results, redactor, [name for name in RENDERERS if child is None or name not in BESIDE])
        if meanwhile is not None:
            meanwhile(bundle)
    finally:
        written = child is not None and child()
    if child is not None and not written:  # the child failed (or could not start): written here, as without one
        for name in BESIDE:
            (bundle / name).unlink(missing_ok=True)
        _write_files(bundle, results, redactor, BESIDE)
    for name, text in (extra_files or {}).items():
        _write_file(bundle / name, (text,), redactor)
    seal(bundle, run.dump(), signer, head, shards)
    return bundle
