"""Write one evidence bundle: a new folder with every format, then seal it."""

from __future__ import annotations

import os
import re
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
    from opsproof.evidence.signing import Signer

# Each format as the pieces it is written in: results.json and junit.xml one check at a time.
RENDERERS: dict[str, Callable[[Results], Iterable[str]]] = {
    "results.json": json_chunks,
    "junit.xml": junit_chunks,
    "report.html": lambda results: (render_html(results),),
}


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
) -> Path:
    """Every format, plus `extra_files` (notifications.json), redacted, then sealed together (`manifest.seal`).

    `redacted_already`: `results` is `Results.redacted(redactor)`'s copy (the run's, made once for
    the writers and the signals), so the first pass below is not made again.
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
        results = results.redacted(redactor)
    pieces = {name: render(results) for name, render in RENDERERS.items()}
    pieces |= {name: (text,) for name, text in (extra_files or {}).items()}
    for name, chunks in pieces.items():
        fd = os.open(bundle / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            for chunk in chunks:
                out.write(redactor.redact(chunk, short=False))
    seal(bundle, run.dump(), signer, head, shards)
    return bundle
