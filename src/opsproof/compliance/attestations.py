"""Attestations: who attested which manual checklist line, when, with what note and evidence.

They live in the history store (SQLite under the report dir, or PostgreSQL with
`--history-dsn`), so every runner of a team sees the same attestations. The table is
append-only (a trigger refuses UPDATE and DELETE) and hash-chained per environment:
each entry's `entry_sha256` covers its fields and the previous entry's hash, so an
edited, removed or back-dated entry breaks the chain. An evidence file is stored by
its sha256 beside the entry, and the entry names that hash.

Every run that checks an attestation copies the entry (with both hashes) into its
sealed bundle, so the bundles also carry the attestations they relied on, and
`opsproof history rebuild` restores any that the store lost.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsproof.compliance import ComplianceError
from opsproof.compliance.periods import Period, parse_utc, period_of

if TYPE_CHECKING:
    from opsproof.compliance.history import History
    from opsproof.targets.attestations import AttestationTarget

MAX_EVIDENCE_BYTES = 20 * 1024 * 1024
MAX_NOTE_CHARS = 4000
# The fields an entry's hash covers, in this order (the hash is over their canonical JSON).
FIELDS = (
    "environment",
    "attestation_id",
    "title",
    "cadence",
    "controls",
    "attested_by",
    "attested_at",
    "note",
    "evidence_name",
    "evidence_sha256",
    "evidence_bytes",
    "host",
    "os_user",
    "previous_sha256",
)


def entry_sha256(entry: dict[str, Any]) -> str:
    covered = {key: entry.get(key) for key in FIELDS}
    if entry.get("change"):  # only where set: the hashes of entries made before change checklists stay the same
        covered["change"] = entry["change"]
    canonical = json.dumps(covered, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def record_attestation(
    history: History,
    environment: str,
    item: AttestationTarget,
    *,
    by: str,
    note: str,
    evidence: Path | None = None,
    at: datetime | None = None,
    change: str | None = None,
) -> dict[str, Any]:
    """Append one attestation; ComplianceError (a usage error) when it could not be valid.

    `at` is for tests only: the command always records the current time, since a
    back-dated attestation is worth nothing to an auditor.
    """
    by, note = by.strip(), note.strip()
    content = check_input(item, by=by, note=note, evidence=evidence)
    if item.cadence == "change" and not change:
        raise ComplianceError(f"{item.name!r} is a change checklist line: name the change with --change TICKET")
    if item.cadence != "change" and change:
        raise ComplianceError(f"--change: {item.name!r} is attested per {item.cadence} period, not per change")
    entry: dict[str, Any] = {
        "environment": environment,
        "attestation_id": item.name,
        "title": item.title,
        "cadence": item.cadence,
        "controls": list(item.controls),
        "attested_by": by,
        "attested_at": None,  # read under the chain's lock, below
        "note": note,
        "evidence_name": evidence.name if evidence is not None else None,
        "evidence_sha256": hashlib.sha256(content).hexdigest() if content is not None else None,
        "evidence_bytes": len(content) if content is not None else None,
        "host": platform.node(),
        "os_user": _os_user(),
        "change": change,
    }
    with history.transaction():
        history.lock_appends()  # the chain's previous entry must not change under us
        # The time is read under the lock, so entries of concurrent writers are in time order.
        when = (at or _store_clock(history)).astimezone(UTC)
        entry["attested_at"] = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        newest = _newest_time(history, environment)
        if newest is not None and entry["attested_at"] < newest:
            # The clock was set back (or is wrong): an entry that claims a time before one already
            # in the chain could make a missed day look attested.
            raise ComplianceError(
                f"this machine's clock reads {entry['attested_at']}, before the newest attestation of "
                f"{environment} ({newest}): an attestation can never claim a time before the newest entry "
                "in its chain; correct the clock and attest again"
            )
        entry["previous_sha256"] = _last_hash(history, environment)
        entry["entry_sha256"] = entry_sha256(entry)
        if content is not None:
            prefix, suffix = history.insert_or_ignore
            history.execute(
                f"{prefix} INTO attestation_evidence (sha256, content) VALUES (?, ?){suffix}",
                (entry["evidence_sha256"], content),
            )
        _insert(history, entry)
    return entry


def check_input(item: AttestationTarget, *, by: str, note: str, evidence: Path | None) -> bytes | None:
    """Refuse an attestation that could not be valid (ComplianceError, exit 4); the evidence file's bytes."""
    by, note = by.strip(), note.strip()
    if not by:
        raise ComplianceError("--by: empty name")
    if not item.may_attest(by):
        raise ComplianceError(f"{by!r} may not attest {item.name!r}; the profile allows: {', '.join(item.attesters)}")
    if not note:
        raise ComplianceError("--note: say what was done (an empty note is no evidence)")
    if len(note) > MAX_NOTE_CHARS:
        raise ComplianceError(
            f"--note: {len(note)} characters; at most {MAX_NOTE_CHARS} (attach a file with --evidence)"
        )
    content = _evidence(evidence)
    if content is None and item.evidence_required:
        raise ComplianceError(f"{item.name!r} requires --evidence FILE (evidence_required: true in the profile)")
    return content


def _evidence(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ComplianceError(f"--evidence {str(path)!r}: not a file")
        if size > MAX_EVIDENCE_BYTES:
            raise ComplianceError(f"--evidence {str(path)!r}: {size} bytes; at most {MAX_EVIDENCE_BYTES} (20 MiB)")
        return path.read_bytes()
    except FileNotFoundError:
        raise ComplianceError(f"--evidence {str(path)!r}: no such file") from None
    except OSError as exc:
        raise ComplianceError(f"--evidence {str(path)!r}: cannot read it: {exc.strerror}") from None


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


def _last_hash(history: History, environment: str) -> str | None:
    rows = history.execute(
        "SELECT entry_sha256 FROM attestations WHERE environment = ? ORDER BY seq DESC LIMIT 1", (environment,)
    )
    return str(rows[0][0]) if rows else None


def _store_clock(history: History) -> datetime:
    """Now, by the clock every writer of the chain shares: a PostgreSQL store's server, else this machine."""
    if history.location.kind == "postgres":
        return datetime.fromisoformat(str(history.execute("SELECT clock_timestamp()")[0][0]))
    return datetime.now(UTC)


def _newest_time(history: History, environment: str) -> str | None:
    # attested_at is always UTC, millisecond precision and 'Z': its text order is its time order.
    rows = history.execute("SELECT max(attested_at) FROM attestations WHERE environment = ?", (environment,))
    return str(rows[0][0]) if rows and rows[0][0] is not None else None


def _insert(history: History, entry: dict[str, Any]) -> None:
    columns = (*FIELDS, "entry_sha256", "change_ticket")
    values = [json.dumps(entry["controls"]) if key == "controls" else entry.get(key) for key in columns[:-1]]
    values.append(entry.get("change"))
    history.execute(
        f"INSERT INTO attestations ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})", values
    )


def entries(history: History, environment: str, attestation_id: str | None = None) -> list[dict[str, Any]]:
    """Every stored entry of an environment (of one attestation), in the order they were appended."""
    columns: tuple[str, ...] = ("seq", *FIELDS, "entry_sha256")
    if history.has_column("attestations", "change_ticket"):
        columns = (*columns, "change_ticket")
    where, params = "environment = ?", [environment]
    if attestation_id is not None:
        where, params = where + " AND attestation_id = ?", [*params, attestation_id]
    rows = history.execute(f"SELECT {', '.join(columns)} FROM attestations WHERE {where} ORDER BY seq", params)
    found = []
    for row in rows:
        entry = dict(zip(columns, row, strict=True))
        entry["controls"] = json.loads(entry["controls"])
        entry["change"] = entry.pop("change_ticket", None)
        found.append(entry)
    return found


def chain_problems(history: History, environment: str) -> list[str]:
    """Breaks in an environment's attestation chain: an edited entry, or one whose predecessor is gone.

    The chain is followed by its links (not by row order), so entries restored from bundles
    after the others still sit where they belong.
    """
    found = entries(history, environment)
    problems = [
        f"entry {e['seq']} ({e['attestation_id']}, {e['attested_at']}): its fields no longer match its hash"
        for e in found
        if entry_sha256(e) != e["entry_sha256"]
    ]
    hashes = {e["entry_sha256"] for e in found}
    for entry in found:
        previous = entry["previous_sha256"]
        if previous is not None and previous not in hashes:
            problems.append(
                f"entry {entry['seq']} ({entry['attestation_id']}, {entry['attested_at']}): "
                f"the entry before it ({previous[:16]}) is missing or was changed"
            )
    for entry in found:
        problem = back_dated(history, entry)
        if problem:
            problems.append(f"entry {entry['seq']} ({entry['attestation_id']}): {problem}")
    followers: dict[str | None, list[dict[str, Any]]] = {}
    for entry in found:
        followers.setdefault(entry["previous_sha256"], []).append(entry)
    for previous, after in followers.items():
        if len(after) > 1:
            names = ", ".join(str(e["seq"]) for e in after)
            problems.append(f"entries {names} all follow {previous[:16] if previous else 'the start'}: the chain forks")
    return problems


def evidence_problem(history: History, entry: dict[str, Any]) -> str | None:
    """Why an entry's evidence file is not what it names (missing or changed), or None."""
    if not entry.get("evidence_sha256"):
        return None
    rows = history.execute("SELECT content FROM attestation_evidence WHERE sha256 = ?", (entry["evidence_sha256"],))
    if not rows:
        return f"its evidence file {entry['evidence_name']} (sha256 {entry['evidence_sha256'][:16]}) is missing"
    if hashlib.sha256(bytes(rows[0][0])).hexdigest() != entry["evidence_sha256"]:
        return f"its evidence file {entry['evidence_name']} was changed"
    return None


def back_dated(history: History, entry: dict[str, Any]) -> str | None:
    """Why an entry cannot be trusted for its day: it claims a time before the entry it follows, or None."""
    if not entry.get("previous_sha256"):
        return None
    rows = history.execute("SELECT attested_at FROM attestations WHERE entry_sha256 = ?", (entry["previous_sha256"],))
    if rows and entry["attested_at"] < str(rows[0][0]):
        return f"back-dated: it claims {entry['attested_at']}, before the entry it follows ({rows[0][0]})"
    return None


def judge(
    history: History, environment: str, item: AttestationTarget, now: datetime, change: str | None = None
) -> dict[str, Any]:
    """The state of one attestation for the period `now` is in (or the run's change): the valid entry, or why not."""
    found = entries(history, environment, item.name)
    if item.cadence == "change":
        return _judge_change(history, item, found, change)
    period = period_of(item.cadence, now.astimezone(UTC).date())
    in_period = [e for e in found if period.contains(parse_utc(e["attested_at"]).date())]
    valid, rejected = _newest_valid(history, item, in_period)
    before = [e for e in found if parse_utc(e["attested_at"]).date() < period.start]
    return {
        "period": _period_dict(period),
        "attestation": _shown(valid) if valid else None,
        "rejected": rejected,
        "last_before": _shown(before[-1]) if before else None,
    }


def _judge_change(
    history: History, item: AttestationTarget, found: list[dict[str, Any]], change: str | None
) -> dict[str, Any]:
    """A change checklist line: the valid entry attested for this run's change, before the run."""
    valid, rejected = _newest_valid(history, item, [e for e in found if change and e.get("change") == change])
    others = [e for e in found if e.get("change") and e.get("change") != change]
    return {
        "period": {"label": f"change {change}" if change else "no change", "change": change or ""},
        "attestation": _shown(valid) if valid else None,
        "rejected": rejected,
        "last_before": _shown(others[-1]) if others else None,
    }


def _newest_valid(
    history: History, item: AttestationTarget, candidates: list[dict[str, Any]]
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The newest entry that counts, and why each of the others that do not count does not."""
    valid, rejected = None, []
    for entry in reversed(candidates):
        reason = _invalid(history, item, entry)
        if reason is None and valid is None:
            valid = entry
        elif reason is not None:
            rejected.append(
                {"attested_by": entry["attested_by"], "attested_at": entry["attested_at"], "reason": reason}
            )
    return valid, rejected


def _invalid(history: History, item: AttestationTarget, entry: dict[str, Any]) -> str | None:
    if entry_sha256(entry) != entry["entry_sha256"]:
        return "its fields no longer match its hash (edited in the store)"
    if not item.may_attest(entry["attested_by"]):
        return f"{entry['attested_by']} is not among the profile's attesters"
    if item.evidence_required and not entry.get("evidence_sha256"):
        return "it carries no evidence file, and the profile requires one"
    return back_dated(history, entry) or evidence_problem(history, entry)


def _shown(entry: dict[str, Any]) -> dict[str, Any]:
    shown = {key: entry.get(key) for key in (*FIELDS, "entry_sha256")}
    return shown | {"change": entry["change"]} if entry.get("change") else shown


def _period_dict(period: Period) -> dict[str, str]:
    return {"label": period.label, "start": period.start.isoformat(), "end": period.end.isoformat()}


def restore_from_record(history: History, record: dict[str, Any]) -> bool:
    """Put back an attestation a bundle's record carries, if the store lacks it; True when restored."""
    entry = (record.get("observed") or {}).get("attestation")
    if not isinstance(entry, dict) or not entry.get("entry_sha256") or entry_sha256(entry) != entry["entry_sha256"]:
        return False
    if history.execute("SELECT 1 FROM attestations WHERE entry_sha256 = ?", (entry["entry_sha256"],)):
        return False
    _insert(history, entry)
    return True
