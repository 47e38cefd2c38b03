"""Attestations: read the attestation store for each declared attestation's current period.

The "target" is the run's history store (SQLite under the report dir, or the
PostgreSQL of `--history-dsn`): one read-only look per run, bounded by the item's
timeout. The probe only reports what is stored and which entries do not count
(edited, by someone not allowed, missing the required evidence); the check decides.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from opsproof.probes import Facts, ProbeContext, ProbeKind
from opsproof.targets.attestations import AttestationTarget


class AttestationFacts(Facts):
    period: dict[str, str] = Field(default_factory=dict, description="label, start, end (exclusive) of this period")
    attestation: dict[str, Any] | None = Field(None, description="the valid entry of this period, newest first")
    rejected: list[dict[str, Any]] = Field(default_factory=list, description="entries of this period that do not count")
    last_before: dict[str, Any] | None = Field(None, description="the newest entry of an earlier period")
    store: str | None = None

    def observed(self) -> dict[str, Any]:
        shown = super().observed()
        shown.pop("elapsed_s", None)
        return shown


async def gather(targets: Sequence[AttestationTarget], ctx: ProbeContext) -> AsyncIterator[AttestationFacts]:
    if not targets:
        return
    # One read of the store for all attestations: they share it, and it is small.
    timeout = max(ctx.profile.timeout_of(t) for t in targets)
    started = time.monotonic()
    async with ctx.limit:
        try:
            async with asyncio.timeout(timeout):
                judged = await asyncio.to_thread(_judge_all, targets, ctx)
        except TimeoutError:
            judged = {
                t.name: _failed(t, f"the attestation store did not answer within {timeout:g}s", True) for t in targets
            }
        except Exception as exc:  # a store that cannot be read: every attestation says so
            reason = ctx.redactor.redact(f"cannot read the attestation store: {type(exc).__name__}: {exc}")
            judged = {t.name: _failed(t, reason, False) for t in targets}
    elapsed = time.monotonic() - started
    for target in targets:
        facts = judged[target.name]
        facts.elapsed_s = elapsed
        yield facts


def _judge_all(targets: Sequence[AttestationTarget], ctx: ProbeContext) -> dict[str, AttestationFacts]:
    from opsproof.compliance.attestations import judge
    from opsproof.compliance.history import History

    if ctx.history is None:
        return {t.name: _failed(t, "this run has no history store to read attestations from", False) for t in targets}
    now = datetime.now(UTC)
    environment = ctx.profile.environment
    with History(ctx.history, create=False) as history:
        return {
            t.name: AttestationFacts(
                target=t.name,
                reached=True,
                store=ctx.history.shown,
                **judge(history, environment, t, now, ctx.change),
            )
            for t in targets
        }


def _failed(target: AttestationTarget, reason: str, timed_out: bool) -> AttestationFacts:
    return AttestationFacts(target=target.name, reached=False, failure=reason, timed_out=timed_out)


PROBE = ProbeKind(
    name="attestations",
    facts=AttestationFacts,
    gather=gather,
    imports=("sqlite3", "opsproof.compliance.attestations", "opsproof.compliance.history"),
)
