"""The end of a run, for signals: notify (before the bundle is sealed, so every attempt is in it), then metrics.

Nothing here changes a record or the exit status. What happened is returned as lines for
the terminal: `notes` (done) and `problems` (something could not be sent or written).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opsproof.compliance.history import Location
    from opsproof.model.results import Results
    from opsproof.model.signals import Notify, Pushgateway
    from opsproof.signals.payloads import Outgoing
    from opsproof.signals.state import Timeline

NOTIFICATIONS_SCHEMA = "opsproof/notifications/v1"
NOTIFICATIONS_FILE = "notifications.json"


@dataclass
class Outcome:
    """What signals did at the end of a run: lines for the terminal, and how long it took."""

    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def notify(
    rules: list[Notify],
    results: Results,
    bundle: Path,
    history: Location | None,
    mode: str,
    redact: Callable[[str], str],
    show: Callable[[str], None],
    outcome: Outcome,
) -> str | None:
    """Work out and send (or show) every notification; the text of notifications.json, or None without `notify:`.

    Never raises: whatever goes wrong is a problem line and a note in notifications.json, so
    the bundle is written and the exit status stays what the checks made it.
    """
    if not rules:  # before the dump below: a copy of every record (~40 MiB at 10,000 checks) for nothing
        return None
    try:
        return _notify(rules, results.dump(), bundle, history, mode, redact, show, outcome)
    except Exception as exc:
        reason = redact(f"{type(exc).__name__}: {exc}")
        outcome.problems.append(f"opsproof: notifications failed ({reason}); recorded in {NOTIFICATIONS_FILE}")
        document = {"schema": NOTIFICATIONS_SCHEMA, "mode": mode, "error": reason, "deliveries": []}
        return json.dumps(document, indent=2) + "\n"


def _notify(
    rules: list[Notify],
    results: Mapping[str, Any],
    bundle: Path,
    history: Location | None,
    mode: str,
    redact: Callable[[str], str],
    show: Callable[[str], None],
    outcome: Outcome,
) -> str | None:
    if not rules:
        return None
    # Here, not at import: a run without `notify:` (most) never loads the payloads, the history's
    # reader of past states or urllib's HTTP client (~9 ms of the pytest process's CPU, compiled).
    from opsproof.signals.delivery import deliver_all, describe
    from opsproof.signals.payloads import RunFacts, outgoing
    from opsproof.signals.state import changes

    clock = time.monotonic()
    run = results["run"]
    document: dict[str, Any] = {"schema": NOTIFICATIONS_SCHEMA, "mode": mode, "deliveries": []}
    if mode == "disabled":
        outcome.notes.append("opsproof: notifications off (--no-notify); nothing sent")
        return json.dumps(document, indent=2) + "\n"
    timeline, document["previous_state"] = _timeline(history, run, [c["check"] for c in results["checks"]])
    facts = RunFacts(
        environment=run["environment"],
        run_id=run["id"],
        status=run["status"],
        exit_code=run["exit_code"],
        fail_on=run.get("fail_on", "high"),
        host=run.get("host") or "",
        started_at=run["started_at"],
        bundle=str(bundle),
        summary={k: results["summary"][k] for k in ("total", "by_outcome", "blocking") if k in results["summary"]},
    )
    messages: list[Outgoing] = []
    limits: dict[str, tuple[float, float]] = {}
    for index, rule in enumerate(rules):
        found = outgoing(rule, index, changes(rule, results["checks"], timeline, run["started_at"]), facts)
        messages += found
        if found:
            limits[found[0].destination] = (rule.timeout, rule.deadline)
    if mode == "dry-run":
        for message in messages:
            shown = describe(message, redact)
            show(
                f"opsproof: would send to {shown['destination']} ({shown['channel']} {shown['event']}) "
                f"{shown['url']}:\n{json.dumps(shown['body'], indent=2)}"
            )
        document["deliveries"] = [{**describe(m, redact), "dry_run": True} for m in messages]
        outcome.notes.append(f"opsproof: --dry-run-notify: {len(messages)} notification(s) shown, none sent")
    else:
        document["deliveries"] = deliver_all(messages, limits, redact)
        _say(document["deliveries"], outcome)
    elapsed = time.monotonic() - clock
    document["elapsed_s"] = round(elapsed, 3)  # the history lookup, the payloads and every delivery
    outcome.seconds += elapsed
    return redact(json.dumps(document, indent=2)) + "\n"


def _timeline(history: Location | None, run: Mapping[str, Any], check_ids: list[str]) -> tuple[Timeline, str]:
    """The checks' earlier records; without a readable history every problem is new (a page too many, none lost)."""
    from opsproof.signals.state import Timeline, load_timeline

    if history is None:
        return Timeline(), "none: no history store"
    from opsproof.compliance.history import History

    try:
        with History(history) as store:
            return load_timeline(store, run["environment"], run["started_at"], check_ids), f"history {history.shown}"
    except Exception as exc:
        return Timeline(), f"unreadable ({type(exc).__name__}: {exc}); every problem treated as new"


def _say(deliveries: list[dict[str, Any]], outcome: Outcome) -> None:
    by_destination: dict[str, list[dict[str, Any]]] = {}
    for delivery in deliveries:
        by_destination.setdefault(delivery["destination"], []).append(delivery)
    for destination, sent in by_destination.items():
        failed = [d for d in sent if not d["delivered"]]
        events = ", ".join(
            f"{sum(1 for d in sent if d['event'] == e)} {e}" for e in dict.fromkeys(d["event"] for d in sent)
        )
        if not failed:
            outcome.notes.append(f"opsproof: notified {destination}: {events}")
            continue
        last = failed[0]["attempts"][-1] if failed[0]["attempts"] else {}
        why = last.get("error") or f"HTTP {last.get('status')}"
        outcome.problems.append(
            f"opsproof: {len(failed)} of {len(sent)} notification(s) to {destination} NOT delivered "
            f"({why}, after {len(failed[0]['attempts'])} attempt(s)); recorded in {NOTIFICATIONS_FILE}"
        )


def export_metrics(
    results: Results,
    cadence: str,
    metrics_file: Path | None,
    pushgateway: str | None,
    gateway: Pushgateway | None,
    redact: Callable[[str], str],
    outcome: Outcome,
) -> None:
    """Write the textfile and push to the gateway, as asked; a failure is a problem line, never an exception."""
    if metrics_file is None and pushgateway is None and (gateway is None or not gateway.url):
        return
    from opsproof.signals import metrics

    clock = time.monotonic()
    text = metrics.render(results, cadence)
    if metrics_file is not None:
        try:
            metrics.write_textfile(metrics_file, text)
            outcome.notes.append(f"opsproof: metrics written to {metrics_file}")
        except OSError as exc:
            outcome.problems.append(f"opsproof: metrics NOT written to {metrics_file}: {exc.strerror or exc}")
    url = pushgateway or (gateway.url if gateway is not None else None)
    if url is not None:
        auth: dict[str, Any] = {}
        if gateway is not None:
            auth = {"username": gateway.username, "password": gateway.password, "bearer_token": gateway.bearer_token}
        try:
            metrics.push(
                url, text, results.run.environment, cadence, timeout=gateway.timeout if gateway else 10.0, **auth
            )
            outcome.notes.append(f"opsproof: metrics pushed to {redact(url)} (cadence {cadence})")
        except Exception as exc:
            reason = getattr(exc, "reason", None) or exc
            outcome.problems.append(redact(f"opsproof: metrics NOT pushed to {url}: {reason}"))
    elapsed = time.monotonic() - clock
    series = text.count("\n") - 2 * text.count("# TYPE")  # every line but the HELP and TYPE of each family
    outcome.notes.append(f"opsproof: metrics: {series} series in {elapsed:.3f} s")
    outcome.seconds += elapsed


def github_summary(
    results: Results, bundle: Path | None, outcome: Outcome, environ: Mapping[str, str] = os.environ
) -> None:
    """Append the run's Markdown summary to $GITHUB_STEP_SUMMARY when GitHub Actions set it."""
    target = environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return
    from opsproof.signals.ci_summary import append_step_summary, step_summary

    try:
        append_step_summary(Path(target), step_summary(results, str(bundle) if bundle else None))
    except OSError as exc:
        outcome.problems.append(f"opsproof: the step summary was NOT written to {target}: {exc.strerror or exc}")
