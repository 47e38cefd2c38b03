"""A real PostgreSQL for the history store's tests, and workers that write to a store at once.

`history_pg` is one session-scoped cluster (opsproof.local.postgres) with a login role whose
password is the tests' SECRET, so tests can prove the DSN's password never shows;
`history_dsn` gives each test a fresh database on it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import SECRET
from opsproof.local.postgres import LocalPostgres, local_postgres

ROLE = "historian"


@pytest.fixture(scope="session")
def history_pg() -> Iterator[LocalPostgres]:
    with local_postgres(max_connections=40) as pg:
        pg.create_role(ROLE, password=SECRET)
        yield pg


@pytest.fixture
def history_dsn(history_pg: LocalPostgres) -> str:
    """A DSN (password included) of a new, empty database owned by the history role."""
    name = f"history_{uuid.uuid4().hex[:10]}"
    history_pg.create_database(name, owner=ROLE)
    return history_pg.dsn(user=ROLE, dbname=name, password=SECRET)


# -- concurrent writers (run in spawned processes: importable, picklable arguments) -----------


def _wait_until(start_at: float) -> None:
    """Every worker starts writing at the same moment: the processes spawn at different speeds."""
    time.sleep(max(0.0, start_at - time.time()))


def write_runs(report_dir: str, target: str, environment: str, count: int, worker: int, start_at: float) -> list[str]:
    """Seal `count` bundles and record each in the history at `target` (a DSN or sqlite:///path)."""
    from helpers.compliance_data import record, results, write
    from opsproof.compliance.history import History, locate
    from opsproof.evidence.manifest import manifest_sha256

    location = locate(Path(report_dir), target)
    written = []
    _wait_until(start_at)
    for n in range(count):
        at = datetime(2026, 7, 1, tzinfo=UTC) + timedelta(hours=worker * 100 + n)
        checks = [record(f"http.health[svc-{i}]", "passed" if (i + n) % 7 else "failed", at=at) for i in range(40)]
        bundle = write(Path(report_dir), results(environment, at, checks))
        with History(location) as history:
            history.record_bundle(bundle, manifest_sha256(bundle))
        written.append(bundle.name)
    return written


def append_attestations(target: str, report_dir: str, count: int, worker: int, start_at: float = 0.0) -> int:
    """Append `count` attestations of one daily item to the store at `target`."""
    from opsproof.compliance.attestations import record_attestation
    from opsproof.compliance.history import History, locate
    from opsproof.targets.attestations import AttestationTarget

    item = AttestationTarget.model_validate(
        {"id": "review-alerts", "title": "Review overnight alerts", "cadence": "daily", "attesters": ["*"]}
    )
    with History(locate(Path(report_dir), target)) as history:
        _wait_until(start_at)
        for n in range(count):
            record_attestation(history, "prod", item, by=f"worker-{worker}", note=f"reviewed, batch {n}")
    return count


def open_new_stores(paths: list[str], start_times: list[float]) -> list[str]:
    """Open each new SQLite store at its start time (other workers open the same one then); the errors."""
    from opsproof.compliance.history import History, HistoryError, locate

    errors = []
    for path, start_at in zip(paths, start_times, strict=True):
        _wait_until(start_at)
        try:
            with History(locate(Path(path).parent, f"sqlite:///{path}")):
                pass
        except HistoryError as exc:
            errors.append(str(exc))
    return errors
