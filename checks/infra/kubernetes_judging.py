"""What the Kubernetes checks share: refusals as errors, offenders named, thresholds that say every finding.

Used by checks/infra/test_kubernetes.py and test_kubernetes_more.py (pytest puts this folder
on the path of both).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opsproof import Check, CheckError, Threshold
from opsproof.outcomes import evaluate
from opsproof.probes.kubernetes import KubernetesFacts

IN_MESSAGE = 3  # offenders named in a message; the record's observed facts hold up to IN_OBSERVED
IN_OBSERVED = 20


def count_shown(value: float) -> str:
    return f"{value:g}"


def answered(facts: KubernetesFacts, *resources: str, namespaced: bool = True) -> None:
    """Every check starts here: refusals are errors, an unreachable or failed list a failure."""
    if facts.config_error:
        raise CheckError(facts.config_error)
    if facts.denied:
        raise CheckError(facts.denied)
    assert facts.reached, facts.failure
    for key in resources:
        error = facts.errors.get(key)
        if error is None:
            continue
        if error["kind"] in ("forbidden", "absent"):
            raise CheckError(error["message"])
        where = f"listing {error['resource']}"
        raise AssertionError(
            f"{where} {error['message']}" if error["kind"] == "timed_out" else f"{where}: {error['message']}"
        )
    if namespaced and facts.missing_namespaces:
        missing = ", ".join(facts.missing_namespaces)
        raise AssertionError(f"namespace(s) {missing} do not exist (a typo, or deleted?): nothing there to check")


def named(entry: dict[str, Any]) -> str:
    return f"{entry['namespace']}/{entry['name']}" if entry.get("namespace") else str(entry["name"])


def listed(lines: list[str]) -> str:
    """The first few offenders, and how many more."""
    shown = "; ".join(lines[:IN_MESSAGE])
    return shown + (f"; and {len(lines) - IN_MESSAGE} more" if len(lines) > IN_MESSAGE else "")


def observe_offenders(check: Check, key: str, lines: list[str]) -> None:
    check.observe(**{key: lines[:IN_OBSERVED]})
    if len(lines) > IN_OBSERVED:
        check.observe(**{f"{key}_more": len(lines) - IN_OBSERVED})


def judge(
    check: Check,
    measure: str,
    value: float,
    threshold: Threshold[Any],
    *,
    lower_is_worse: bool = False,
    show: Callable[[float], str] = count_shown,
    detail: str | None = None,
) -> str | None:
    """Check.threshold that returns the failure instead of raising, so one record can say every finding."""
    check.expect_threshold(measure, threshold, show=show)
    verdict = evaluate(measure, value, threshold.warn, threshold.fail, lower_is_worse=lower_is_worse, show=show)
    message = f"{verdict.message}; {detail}" if detail else verdict.message
    if verdict.level == "warn":
        check.warn(message)
    return message if verdict.level == "fail" else None
