"""What each destination is sent: PagerDuty Events API v2 events, one Slack Block Kit message, one webhook JSON.

Built from the run's records (already redacted) and the destination's settings (which may
hold secrets: the routing key, the webhook URL, headers); whatever is shown or recorded of
an outgoing message goes through the profile's redactor first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opsproof.model.signals import Notify
from opsproof.signals.state import Noted, age
from opsproof.units import format_duration

# CONTRACT severities to the Events API's: critical, error, warning, info.
PAGERDUTY_SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}
NOTIFICATION_SCHEMA = "opsproof/notification/v1"
SLACK_LIST_LIMIT = 2800  # a section's text holds 3,000 characters at most
SUMMARY_LIMIT = 1024  # PagerDuty's payload.summary
DEDUP_LIMIT = 255


@dataclass
class Outgoing:
    """One HTTP POST to make: where, what, and which records it is about."""

    destination: str
    channel: str
    event: str  # trigger, resolve, message
    url: str
    body: dict[str, Any]
    checks: list[str]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunFacts:
    """What every message says of the run: where it ran and where its evidence is."""

    environment: str
    run_id: str
    status: str
    exit_code: int
    fail_on: str
    host: str
    started_at: str
    bundle: str  # the bundle's folder (a path), named in every message
    summary: Mapping[str, Any]


def destination_name(rule: Notify, index: int) -> str:
    return rule.name or f"{rule.channel}#{index}"


def dedup_key(environment: str, check_id: str) -> str:
    """environment + check id, within PagerDuty's 255 characters (a long id keeps a hash of itself)."""
    key = f"opsproof/{environment}/{check_id}"
    if len(key) <= DEDUP_LIMIT:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{key[: DEDUP_LIMIT - 17]}~{digest}"


def outgoing(rule: Notify, index: int, noted: Sequence[Noted], run: RunFacts) -> list[Outgoing]:
    """The messages `rule` sends for this run: nothing when nothing changed and no reminder is due."""
    if not any(n.change in ("new", "recovered", "reminder") for n in noted):
        return []
    name = destination_name(rule, index)
    if rule.pagerduty is not None:
        return [_pagerduty(rule, name, n, run) for n in noted if n.change != "still"]
    if rule.slack is not None:
        message = slack_message(noted, run, bundle_link(rule, run))
        return [Outgoing(name, "slack", "message", rule.slack.webhook_url, message, _ids(noted))]
    assert rule.webhook is not None
    body = webhook_body(noted, run)
    body["run"]["bundle_url"] = bundle_link(rule, run)
    return [Outgoing(name, "webhook", "message", rule.webhook.url, body, _ids(noted), dict(rule.webhook.headers))]


def _ids(noted: Sequence[Noted]) -> list[str]:
    return [n.record["check"] for n in noted if n.change != "still"]


def _pagerduty(rule: Notify, name: str, noted: Noted, run: RunFacts) -> Outgoing:
    assert rule.pagerduty is not None
    record = noted.record
    body: dict[str, Any] = {
        "routing_key": rule.pagerduty.routing_key,
        "dedup_key": dedup_key(run.environment, record["check"]),
    }
    if noted.change == "recovered":
        body["event_action"] = "resolve"
    else:
        body["event_action"] = "trigger"
        still = f" (still failing, for {_age(noted, run)})" if noted.change == "reminder" else ""
        body["payload"] = {
            "summary": f"[{run.environment}] {record['check']} {record['outcome']}{still}: {record['message']}"[
                :SUMMARY_LIMIT
            ],
            "source": f"{run.environment}/{record.get('target') or record['check']}",
            "severity": PAGERDUTY_SEVERITY.get(record["severity"], "error"),
            "timestamp": record.get("started_at") or run.started_at,
            "component": record.get("target") or record["check"],
            "group": run.environment,
            "class": record.get("kind") or "check",
            "custom_details": {
                "check": record["check"],
                "outcome": record["outcome"],
                "severity": record["severity"],
                "message": record["message"],
                "observed": record.get("observed"),
                "expected": record.get("expected"),
                "failing_since": noted.since,
                "reminder": noted.change == "reminder",
                "run_id": run.run_id,
                "host": run.host,
                "bundle": run.bundle,
            },
        }
        body["client"] = "opsproof"
        body["links"] = [{"href": bundle_link(rule, run), "text": "opsproof evidence bundle"}]
    return Outgoing(name, "pagerduty", body["event_action"], rule.pagerduty.url, body, [record["check"]])


def bundle_link(rule: Notify, run: RunFacts) -> str:
    """The rule's `bundle_url` with the bundle's folder name, else a file:// URL on the runner."""
    if rule.bundle_url is not None:
        return rule.bundle_url.replace("{bundle}", run.bundle.rstrip("/").rsplit("/", 1)[-1])
    return f"file://{run.host}{run.bundle}"


def _age(noted: Noted, run: RunFacts) -> str:
    seconds = age(noted.since, run.started_at)
    return format_duration(seconds) if seconds is not None else "unknown"


def _line(noted: Noted, run: RunFacts) -> str:
    record = noted.record
    text = f"• `{record['check']}` ({record['severity']}) {record['outcome']}: {record['message']}"
    if noted.change in ("still", "reminder"):
        text += f" — failing for {_age(noted, run)}"
    return text.replace("\n", " ")[:400]


def _listing(title: str, lines: list[str]) -> dict[str, Any]:
    shown, used = [], 0
    for index, line in enumerate(lines):
        if used + len(line) > SLACK_LIST_LIMIT:
            shown.append(f"… and {len(lines) - index} more (see the bundle)")
            break
        shown.append(line)
        used += len(line) + 1
    return {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*\n" + "\n".join(shown)}}


def slack_message(noted: Sequence[Noted], run: RunFacts, link: str) -> dict[str, Any]:
    """One Block Kit message: new failures, recoveries, still failing (with age), and where the evidence is."""
    groups = {
        "New failures": [n for n in noted if n.change == "new"],
        "Recovered": [n for n in noted if n.change == "recovered"],
        "Still failing": [n for n in noted if n.change in ("still", "reminder")],
    }
    words = {"New failures": ("new failure", "new failures"), "Recovered": ("recovered",) * 2}
    words["Still failing"] = ("still failing",) * 2
    counts = ", ".join(f"{len(items)} {words[title][len(items) != 1]}" for title, items in groups.items() if items)
    headline = f"opsproof {run.environment}: {counts}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": headline[:150]}},
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"Run *{run.status}* (exit {run.exit_code}, fail-on {run.fail_on}) on `{run.host}`",
            },
        },
    ]
    blocks += [_listing(title, [_line(n, run) for n in items]) for title, items in groups.items() if items]
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"<{link}|evidence bundle> `{run.bundle}` · run {run.run_id}"}],
        }
    )
    return {"text": headline, "blocks": blocks}


def webhook_body(noted: Sequence[Noted], run: RunFacts) -> dict[str, Any]:
    """The run's summary and the changed records, as JSON."""
    return {
        "schema": NOTIFICATION_SCHEMA,
        "run": {
            "id": run.run_id,
            "environment": run.environment,
            "status": run.status,
            "exit_code": run.exit_code,
            "fail_on": run.fail_on,
            "host": run.host,
            "started_at": run.started_at,
            "bundle": run.bundle,
        },
        "summary": dict(run.summary),
        "changes": [
            {"change": n.change, "since": n.since, "record": dict(n.record)} for n in noted if n.change != "still"
        ],
        "still_failing": [
            {"check": n.record["check"], "since": n.since, "age_s": round(age(n.since, run.started_at) or 0.0, 3)}
            for n in noted
            if n.change in ("still", "reminder")
        ],
    }
