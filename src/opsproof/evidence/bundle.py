"""Write one evidence bundle: a new folder with every format, then seal it."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from opsproof.evidence.html import render_html
from opsproof.evidence.junit import render_junit
from opsproof.evidence.manifest import seal
from opsproof.evidence.results_json import render_json
from opsproof.model.results import Results, Run
from opsproof.redaction import Redactor

if TYPE_CHECKING:
    from opsproof.evidence.signing import Signer

RENDERERS: dict[str, Callable[[Results], str]] = {
    "results.json": render_json,
    "junit.xml": render_junit,
    "report.html": render_html,
}


def bundle_path(run: Run, report_dir: Path) -> Path:
    """Where a run's bundle goes: `<report-dir>/<environment>-<started, compact>-<run id[:8]>`."""
    stamp = re.sub(r"[-:]|\.\d+", "", run.started_at)  # 20261124T104500Z
    environment = re.sub(r"[^A-Za-z0-9_.-]", "_", run.environment)
    return report_dir / f"{environment}-{stamp}-{run.id[:8]}"


def write_bundle(
    results: Results,
    report_dir: Path,
    redactor: Redactor,
    signer: Signer | None = None,
    extra_files: Mapping[str, str] | None = None,
) -> Path:
    """Every format, plus `extra_files` (notifications.json), redacted, then sealed together."""
    run = results.run
    report_dir.mkdir(parents=True, exist_ok=True)
    bundle = bundle_path(run, report_dir)
    bundle.mkdir()
    # The last pass: the free text redacted before any format escapes it; the pass over each rendered
    # file is a second line of defence, for secrets long enough never to be mistaken for a word or an outcome.
    results = results.redacted(redactor)
    texts = {name: render(results) for name, render in RENDERERS.items()} | dict(extra_files or {})
    for name, text in texts.items():
        text = redactor.redact(text, short=False)
        fd = os.open(bundle / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
    seal(bundle, run.dump(), signer)
    return bundle
