"""The markers of CONTRACT §1, registered by the plugin and enforced strictly."""

from __future__ import annotations

CADENCE_MARKERS = {
    "daily": "runs every day (cron: pytest -m daily)",
    "weekly": "runs every week",
    "monthly": "runs every month (restore drills)",
    "quarterly": "runs every quarter (a quarterly DR drill, access reviews)",
    "yearly": "runs every year",
    "change": "once per change (`--change TICKET`): the checklist lines of a deploy or a maintenance",
}
AREA_MARKERS = {
    "health": "service health endpoints",
    "infra": "databases, caches, clusters",
    "certs": "certificates and TLS",
    "backup": "backup freshness and integrity",
    "dr": "disaster-recovery drills",
    "monitoring": "monitoring and alerting",
    "security": "security posture",
    "capacity": "capacity and resources",
    "compliance": "manual checklist lines attested by a person",
}
STAGE_MARKERS = {"post_deploy": "the subset CI runs after a deploy"}

ALL_MARKERS = {**CADENCE_MARKERS, **AREA_MARKERS, **STAGE_MARKERS}
