"""Attestations: the manual lines of the runbooks' checklists, attested by a person each period.

Runbook 000's daily, weekly and monthly checklists ("review overnight alerts and resolve
any issues", "update emergency contact information", "conduct service level agreement
(SLA) review") are done by people. Each profile `attestations` item is one check
`attestations.attested[<id>]`, run in the item's own cadence, that passes only when
someone the profile allows attested it in the current period (UTC day, ISO week or
month); the record names who, when, the note and the evidence file's sha256.
"""

from __future__ import annotations

from typing import Any

from opsproof import Check, CheckError
from opsproof.probes.attestations import AttestationFacts
from opsproof.targets.attestations import AttestationTarget


def test_attested(item: AttestationTarget, facts: AttestationFacts, check: Check) -> None:
    period = facts.period.get("label", "this period")
    check.expect(
        period=f"{period} ({item.cadence})",
        attesters="anyone" if "*" in item.attesters else item.attesters,
        evidence_required=item.evidence_required,
    )
    if not facts.reached:
        # The store could not be read: that says nothing about whether anyone attested.
        raise CheckError(facts.failure or "the attestation store could not be read")
    found = facts.attestation
    if item.cadence == "change" and not facts.period.get("change"):
        raise AssertionError(
            f"{item.title!r} is a change checklist line, and this run names no change: "
            "run the post-deploy checks with --change TICKET (or $OPSPROOF_CHANGE)"
        )
    if found is None:
        message = f"no valid attestation of {item.title!r} for {period} ({item.cadence})"
        if facts.rejected:
            message += "; not counted: " + "; ".join(
                f"{_when(r['attested_at'])} by {r['attested_by']}: {r['reason']}" for r in facts.rejected
            )
        last = facts.last_before
        message += (
            f"; last attested {_when(last['attested_at'])} by {last['attested_by']}" if last else "; never attested"
        )
        raise AssertionError(message)
    check.note(f"attested by {found['attested_by']} at {_when(found['attested_at'])}: {_short(found['note'])}")
    if facts.rejected:
        check.warn(
            f"{len(facts.rejected)} other attestation(s) of {period} do not count: {facts.rejected[0]['reason']}"
        )


def _when(timestamp: Any) -> str:
    text = str(timestamp)
    return text[:16].replace("T", " ") + " UTC" if text.endswith("Z") else text


def _short(note: str, limit: int = 120) -> str:
    line = note.strip().splitlines()[0] if note.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"
