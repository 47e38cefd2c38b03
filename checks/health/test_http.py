"""HTTP health endpoints (runbook 000's health-endpoint table; 003's /health and /ready).

Each profile `http` item is one check `http.health[<name>]`: reachable in time,
expected status, JSON subset, body pattern, latency thresholds.
"""

from __future__ import annotations

import re

import pytest

from opsproof import Check
from opsproof.judging.compare import json_subset_mismatches
from opsproof.probes.http import HttpFacts
from opsproof.targets.http import HttpTarget
from opsproof.units import format_duration

pytestmark = [pytest.mark.health, pytest.mark.post_deploy]


def test_health(item: HttpTarget, facts: HttpFacts, check: Check) -> None:
    expect = item.expect
    check.expect(status=expect.status)
    if expect.json_body is not None:
        check.expect(json=expect.json_body)
    if expect.body is not None:
        check.expect(body=expect.body)

    assert facts.reached, facts.failure
    assert facts.status in expect.status, (
        f"HTTP {facts.status} {facts.reason or ''}".rstrip()
        + f", expected {' or '.join(map(str, expect.status))}"
        + (f" (redirect to {facts.location})" if facts.location else "")
    )
    if expect.json_body is not None:
        assert facts.json_body is not None, (
            f"body is not JSON ({facts.json_error or 'empty'}); expected {expect.json_body}"
        )
        mismatches = json_subset_mismatches(expect.json_body, facts.json_body)
        assert not mismatches, "JSON differs: " + "; ".join(mismatches)
    if expect.body is not None:
        assert re.search(expect.body, facts.body_text), f"body does not match /{expect.body}/"
    check.note(f"HTTP {facts.status} in {format_duration(facts.latency_s or 0)}")
    samples = facts.latency_samples_ms
    detail = f"the faster of {len(samples)} samples ({', '.join(f'{s:g}ms' for s in samples)})" if samples else None
    check.threshold("latency", facts.latency_s, expect.latency, show=format_duration, detail=detail)
