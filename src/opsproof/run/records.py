"""One check's record: its identity, outcome, message, controls and waiver, from pytest's report.

Built in `pytest_runtest_makereport` (so it travels to the xdist controller with the
report), redacted before it leaves: the Recorder only collects them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

import pytest

from opsproof.judging import maintenance
from opsproof.model.check import Check, CheckError
from opsproof.model.markers import ALL_MARKERS
from opsproof.probes import kind_named, utc_iso
from opsproof.profile import Waiver
from opsproof.redaction import Redactor
from opsproof.run import custom
from opsproof.run.state import RunState, TargetRef

IDENTITY = pytest.StashKey[tuple[str, str, str | None, str]]()  # per item: (check id, kind, target, severity)
MARKERS = pytest.StashKey[list[str]]()  # per item: the contract's markers on it


def identity(item: pytest.Item) -> tuple[str, str, str | None, str]:
    """(check id, kind, target name, severity) of a collected check; worked out once per item."""
    known = item.stash.get(IDENTITY, None)
    if known is None:
        known = item.stash[IDENTITY] = _identity(item)
    return known


def _identity(item: pytest.Item) -> tuple[str, str, str | None, str]:
    ref = _target_of(item)
    if ref is None:  # a check of one's own (opsproof.run.custom)
        return custom.identity(item)
    # The parameter names its kind: the one its module's path named when it was made (pytest_generate_tests).
    aspect = getattr(item, "originalname", item.name).removeprefix("test_")
    return f"{ref.kind}.{aspect}[{ref.label}]", ref.kind, ref.name, ref.severity


def _target_of(item: pytest.Item) -> TargetRef | None:
    callspec = getattr(item, "callspec", None)
    ref = callspec.params.get("target") if callspec is not None else None
    return ref if isinstance(ref, TargetRef) else None


def markers_of(item: pytest.Item) -> list[str]:
    """The contract's markers on a check, worked out once per item."""
    known = item.stash.get(MARKERS, None)
    if known is None:
        known = item.stash[MARKERS] = sorted({m.name for m in item.iter_markers() if m.name in ALL_MARKERS})
    return known


def check_of(item: pytest.Item) -> Check:
    """The check's `check` fixture value, or a bare one when the fixture never ran."""
    check_id, kind, target, severity = identity(item)
    found = (getattr(item, "funcargs", None) or {}).get("check")
    if not isinstance(found, Check):
        found = Check(check_id=check_id, kind=kind, target=target, severity=severity)
    found.check_id = check_id
    return found


class AllureAnnotator:
    """With `--alluredir`: each check's severity and observed facts go into its Allure result."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Any:
        try:
            return (yield)
        finally:
            from opsproof.evidence.allure import annotate

            annotate(check_of(item), self.redactor)


def redact_report(report: pytest.TestReport, redactor: Redactor) -> None:
    if report.longrepr is not None and not isinstance(report.longrepr, tuple):
        report.longrepr = redactor.redact(str(report.longrepr))
    report.sections = [(title, redactor.redact(text)) for title, text in report.sections]


def build_record(
    item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport, state: RunState
) -> dict[str, Any]:
    check = check_of(item)
    outcome, message = _outcome(call, report, check)
    record: dict[str, Any] = {
        "id": item.nodeid,
        "check": check.check_id,
        "kind": check.kind,
        "target": check.target,
        "markers": markers_of(item),
        "controls": _controls(item, check, state),
        "severity": check.severity,
        "outcome": outcome,
        "message": message,
        "observed": check.observed,
        "expected": check.expected,
        "started_at": check.started_at or utc_iso(call.start),
        "duration_s": check.duration_s if check.duration_s is not None else round(call.duration, 4),
        "phase": report.when,
    }
    if check.measures:
        record["measures"] = check.measures
    if outcome in ("failed", "error"):
        _apply_waiver(record, state.loaded.profile.waivers)
        maintenance.apply(record, state.loaded.profile.maintenance)
    return state.redactor.redact_fields(record, _free_text())


def unreported_record(item: pytest.Item, state: RunState, message: str, at: str) -> dict[str, Any]:
    """The record of a check whose shard never reported it (seal-run): `error`, never silence."""
    check_id, kind, target, severity = identity(item)
    check = Check(check_id=check_id, kind=kind, target=target, severity=severity)
    record: dict[str, Any] = {
        "id": item.nodeid,
        "check": check_id,
        "kind": kind,
        "target": target,
        "markers": markers_of(item),
        "controls": _controls(item, check, state),
        "severity": severity,
        "outcome": "error",
        "message": message,
        "observed": {},
        "expected": {},
        "started_at": at,
        "duration_s": 0.0,
        "phase": "setup",
    }
    _apply_waiver(record, state.loaded.profile.waivers)
    return state.redactor.redact_data(record)  # type: ignore[no-any-return]


def _controls(item: pytest.Item, check: Check, state: RunState) -> list[str]:
    aspect = check.check_id.split(".", 1)[-1].split("[", 1)[0]
    if _target_of(item) is None:  # a check of one's own: the controls its marker names
        own: Any = custom.controls_of(item)
    else:
        items = state.loaded.profile.targets(kind_named(check.kind).section)
        # An item's own `controls:` (attestations) win.
        own = getattr(items.get(check.target) if check.target else None, "controls", None)
    change = state.change
    validates_change = "post_deploy" in markers_of(item) and any(
        change.get(k) for k in ("ticket", "commit", "image_digest")
    )
    return state.controls.controls(
        check.kind,
        aspect,
        check.check_id,
        item_controls=own if isinstance(own, list) else None,
        validates_change=validates_change,
    )


def _outcome(call: pytest.CallInfo[None], report: pytest.TestReport, check: Check) -> tuple[str, str]:
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        return "skipped", reason.removeprefix("Skipped: ")
    if report.passed:
        if check.warnings:
            return "warned", "; ".join(check.warnings)
        return "passed", check.summary or "as expected"
    exc = call.excinfo.value if call.excinfo is not None else None
    if report.when == "call" and isinstance(exc, AssertionError):
        return "failed", _assertion_message(exc)
    if isinstance(exc, (pytest.UsageError, CheckError)):
        return "error", str(exc)
    where = "" if report.when == "call" else f"{report.when} failed: "
    detail = f"{type(exc).__name__}: {exc}" if exc is not None else report.longreprtext.strip().splitlines()[-1]
    return "error", f"{where}{detail}"


def _assertion_message(exc: AssertionError) -> str:
    # pytest's rewriting appends "\nassert <explanation>" to the message; the message is the finding.
    text = str(exc).strip()
    if not text:
        return "assertion failed"
    return text.split("\nassert ", 1)[0].strip() or text.splitlines()[0]


def _apply_waiver(record: dict[str, Any], waivers: list[Waiver]) -> None:
    matching = [w for w in waivers if w.matches(record["check"])]
    if not matching:
        return
    today = datetime.now(UTC).date()
    active = [w for w in matching if w.expires >= today]
    if active:
        record["waiver"] = {**waiver_dict(active[0]), "status": "applied"}
        record["outcome"] = "waived"
        return
    expired = max(matching, key=lambda w: w.expires)
    record["waiver"] = {**waiver_dict(expired), "status": "expired"}
    record["message"] += f" (waiver {expired.ticket} expired on {expired.expires}; not applied)"


def waiver_dict(waiver: Waiver) -> dict[str, Any]:
    data = waiver.model_dump(mode="json")
    return {key: data[key] for key in ("check", "reason", "ticket", "approved_by", "expires")}


@cache
def _free_text() -> tuple[str, ...]:
    # At the first record, not with the plugin: the results document's models (~9 ms to import,
    # compiled) are not needed before the probe processes get their work, and load while the run
    # waits for its first facts (`recorder.load_bundle_writers`).
    from opsproof.model.results import CheckRecord, free_text_fields

    return free_text_fields(CheckRecord)
