"""`opsproof history rebuild`: the history store rebuilt from the evidence bundles on disk."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from opsproof.compliance.attestations import restore_from_record
from opsproof.compliance.history import History, read_receipt
from opsproof.evidence.chain import find_environments
from opsproof.evidence.manifest import manifest_sha256
from opsproof.evidence.verify import verify_bundle
from opsproof.model.results import Results


@dataclass
class RebuildReport:
    runs: int = 0
    records: int = 0
    attestations_restored: int = 0
    skipped: list[str] = field(default_factory=list)


def rebuild(history: History, report_dir: Path) -> RebuildReport:
    """Replace every run and record with those of the bundles under `report_dir`.

    Bundles that fail verification are left out and named. Attestations are kept (they
    are primary records, not derived from bundles); any a bundle's attestation record
    names that the store lacks is restored from that record.
    """
    report = RebuildReport()
    with history.transaction():
        history.execute("DELETE FROM observations")
        history.execute("DELETE FROM records")
        history.execute("DELETE FROM runs")
        for bundles in find_environments(report_dir).values():
            for bundle in bundles:
                problems = verify_bundle(bundle)
                if problems:
                    report.skipped.append(f"{bundle.name}: {problems[0]}")
                    continue
                results = Results.model_validate_json((bundle / "results.json").read_text())
                manifest = json.loads((bundle / "manifest.json").read_text())
                upload = read_receipt(report_dir, bundle.name)
                if history.insert_run(results, bundle.name, manifest_sha256(bundle), manifest, upload):
                    report.runs += 1
                    report.records += len(results.checks)
                for check in results.checks:
                    if check.kind == "attestations" and restore_from_record(history, check.dump()):
                        report.attestations_restored += 1
    return report
