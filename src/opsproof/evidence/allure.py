"""Allure results through allure-pytest: severity as Allure's label, observed facts attached."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opsproof.model.check import Check
    from opsproof.redaction import Redactor

# The runbooks' P0-P3 onto Allure's five levels.
ALLURE_SEVERITY = {"critical": "blocker", "high": "critical", "medium": "normal", "low": "minor"}


def annotate(check: Check, redactor: Redactor) -> None:
    """Called while the Allure test case is open, after the check body ran."""
    import allure

    allure.dynamic.severity(allure.severity_level(ALLURE_SEVERITY.get(check.severity, "normal")))
    allure.dynamic.label("opsproof_severity", check.severity)
    allure.dynamic.label("opsproof_check", check.check_id)
    if check.target:
        allure.dynamic.tag(check.kind)
    if check.warnings:
        allure.dynamic.label("opsproof_outcome", "warned")
        allure.dynamic.description(redactor.redact("WARNED: " + "; ".join(check.warnings)))
    # Values redacted before JSON escapes them; keys are structure and stay; then a last pass for long secrets.
    facts = {"observed": check.observed, "expected": check.expected, "warnings": check.warnings}
    evidence = redactor.redact_data(json.loads(json.dumps(facts, default=str)))
    allure.attach(
        redactor.redact(json.dumps(evidence, indent=2), short=False),
        name="observed facts",
        attachment_type=allure.attachment_type.JSON,
    )
