"""The results document of a run (`opsproof.model.results.Results`), built from the run's state."""

from __future__ import annotations

import getpass
import platform
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsproof import outcomes
from opsproof.evidence.record_view import RecordView
from opsproof.judging import maintenance
from opsproof.model.results import SCHEMA, CheckRecord, Results, free_text_fields
from opsproof.units import utc_now
from opsproof.version import __version__

if TYPE_CHECKING:
    import pytest

    from opsproof.evidence.html_facts import FactsDrafter
    from opsproof.evidence.premade import CheckPieces, Premade
    from opsproof.redaction import Redactor
    from opsproof.run.state import RunState


def build_results(
    config: pytest.Config,
    state: RunState,
    commit: GitCommit | None = None,
    *,
    shown_by: Redactor | None = None,
    premade: Premade | None = None,
) -> Results:
    """The run's results document; it takes the records out of `state.records` (see `_take_records`).

    `commit`: the suite's commit, asked for when the checks began (else asked now).
    `shown_by`: the document as the bundle shows it, `Results.redacted(shown_by)`'s copy; the
    records made as their checks ended (`keep_record`) are that copy's already, and their pieces
    of the bundle's files go to `premade`.
    """
    checks = list(state.records.values())
    exit_code = state.exit_code if state.exit_code is not None else outcomes.EXIT_INTERNAL
    loaded = state.loaded
    run = {
        "id": state.run_id,
        "environment": loaded.profile.environment,
        "profile": {"path": str(loaded.path), "sha256": loaded.sha256},
        "started_at": state.started_at,
        "finished_at": utc_now(),
        "selection": {
            "markers": config.option.markexpr or None,
            "keywords": config.option.keyword or None,
            "paths": [str(a) for a in config.args],
        },
        "suite": {"version": __version__, "commit": (commit or GitCommit(config.rootpath)).result()},
        "host": platform.node(),
        "user": current_user(),
        # `pytest` whether it ran as `pytest`, `python -m pytest` or through `opsproof demo`.
        "command": state.redactor.redact(" ".join(["pytest", *map(str, config.invocation_params.args)])),
        "status": outcomes.RUN_STATUS.get(exit_code, "failed"),
        "exit_code": exit_code,
        "fail_on": state.fail_on,
        "vars": dict(sorted(loaded.plain_vars.items())),
        # The change this run validated (ticket, commit, image digest, CI build) and where each came from.
        "change": state.change or None,
    }
    if state.shard is not None:  # shard I of N of run R: `opsproof seal-run` joins the shards into one run
        from opsproof.profile import ITEM_SECTIONS

        run["shard"] = state.shard.as_dict(state.run_id, {s: state.targets(s) for s in ITEM_SECTIONS})
    if state.signalled:
        run["interrupted_by"] = state.signalled
    if state.collect_errors:
        run["collection_errors"] = state.collect_errors
    summary = summarize(checks, state.fail_on, state.unmatched_waivers, state.unmatched_windows)
    del checks
    if shown_by is None:
        return Results.model_validate(
            {"schema": SCHEMA, "run": run, "checks": _take_records(state), "summary": summary}
        )
    # The run and the summary as `Results.redacted` makes them; the records each as it makes them.
    head = Results.model_validate({"schema": SCHEMA, "run": run, "checks": [], "summary": summary})
    shown = head.redacted(shown_by)
    return shown.model_copy(update={"checks": _take_records(state, shown_by, premade)})


class Kept(RecordView):
    """A record kept as its check ended: read as its dict (a `RecordView` of its model), with its pieces.

    `pieces` were made of the record as the bundle shows it, redacted by the run's redactor
    as it was then (`version`): `pieces.record` is `model` itself when there was no secret.
    """

    __slots__ = ("model", "pieces", "version")

    def __init__(self, model: CheckRecord, pieces: CheckPieces, version: int) -> None:
        super().__init__(model)
        self.model = model
        self.pieces = pieces
        self.version = version


def keep_record(record: dict[str, Any], redactor: Redactor, drafter: FactsDrafter | None = None) -> Mapping[str, Any]:
    """What the run keeps of a check's record as the check ends (the Recorder, between two checks' facts).

    Its model, the model as the bundle shows it (redacted, as `Results.redacted` makes each
    record) and the pieces of the bundle's files made of that: at the end they are joined,
    not made (`evidence.premade`). The dict is let go. A record that does not validate is
    kept as it is: the results document then fails on it, as it always did (exit 3).
    `drafter`: the run's, for report.html's facts (`evidence.premake.make_pieces`).
    """
    from opsproof.evidence.premake import make_pieces

    try:
        model = _model(record)
        shown = _shown(model, redactor) if redactor else model
        pieces = make_pieces(shown, drafter)
    except Exception:
        return record
    return Kept(model, pieces, redactor.version)


def _take_records(
    state: RunState, shown_by: Redactor | None = None, premade: Premade | None = None
) -> list[CheckRecord]:
    """Each record as its model (redacted by `shown_by`, if given), taken out of `state.records` as it is made.

    The records kept as their checks ended (`Kept`) are models already; a dict is made one
    here. The document then holds the records, and the run never holds them twice: at 10,000
    checks, the dicts and the models side by side were ~20 MiB of the run's peak. Should a
    record not validate, the records are put back as dicts (the terminal summary then shows
    them) and the error goes on (the bundle could not be written: exit 3).
    """
    records = state.records
    models: list[CheckRecord] = []
    try:
        for key in list(records):
            kept = records[key]
            if isinstance(kept, Kept) and shown_by is not None and kept.version == shown_by.version:
                models.append(kept.pieces.record)  # shown already, and its pieces made of it
                if premade is not None:
                    premade.add(kept.pieces)
            else:  # a dict; or no secret to hide, or the redactor changed since: made again, as it was made then
                model = kept.model if isinstance(kept, Kept) else _model(kept)
                models.append(_shown(model, shown_by) if shown_by else model)
            del records[key]
    except Exception:
        remaining = dict(records)
        records.clear()
        records.update((model.id, model.dump()) for model in models)
        records.update(remaining)
        raise
    return models


# The records given the same keys share one fields-set (see _SharedFieldsSet).
_SHARED: dict[frozenset[str], _SharedFieldsSet] = {}


def _model(record: Mapping[str, Any]) -> CheckRecord:
    model = CheckRecord.model_validate(record)
    given = frozenset(model.__pydantic_fields_set__)
    # pydantic keeps a set of the fields given per model (~0.7 KiB: 7 MiB at 10,000 checks); the
    # records given the same keys share one, which refuses a field not in it (see _SharedFieldsSet).
    object.__setattr__(
        model, "__pydantic_fields_set__", _SHARED.get(given) or _SHARED.setdefault(given, _SharedFieldsSet(given))
    )
    return model


def _shown(model: CheckRecord, redactor: Redactor) -> CheckRecord:
    """The record as `Results.redacted` makes it: its dump's free text redacted, validated again."""
    return _model(redactor.redact_fields(model.dump(), free_text_fields(CheckRecord)))


class _SharedFieldsSet(set[str]):
    """The fields-set of many check records at once: assigning a field not in it raises, never marks them all.

    pydantic adds a field's name to the set when an attribute is assigned; a name already in
    it changes nothing, a new one would mark the field set on every record sharing it.
    """

    __slots__ = ()

    def add(self, name: str) -> None:
        if name not in self:
            raise TypeError(f"a results document's check record is read-only here (setting {name!r}); copy it first")


def summarize(
    checks: Sequence[Mapping[str, Any]],
    fail_on: str,
    unmatched_waivers: list[dict[str, Any]],
    unmatched_windows: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    # One pass, each record's fields read once: a kept record is read through its model (`Kept`), and
    # the pass per total that read them again and again took ~1 ms at 1,000 checks.
    by_outcome: dict[str, int] = {}
    by_severity: dict[str, dict[str, int]] = {}
    blocking: list[Any] = []
    applied: set[Any] = set()
    expired: set[Any] = set()
    for c in checks:
        outcome, severity = c["outcome"], c["severity"]
        by_outcome[outcome] = by_outcome.get(outcome, 0) + 1
        row = by_severity.setdefault(severity, {})
        row[outcome] = row.get(outcome, 0) + 1
        if outcomes.is_blocking(outcome, severity, fail_on, held=bool(c.get("maintenance"))):
            blocking.append(c["check"])
        waiver = c.get("waiver", {})
        status = waiver.get("status")
        if status == "applied":
            applied.add(waiver["ticket"])
        elif status == "expired":
            expired.add(waiver["ticket"])
    return {
        "total": len(checks),
        "by_outcome": {o: by_outcome.get(o, 0) for o in outcomes.OUTCOMES},
        "by_severity": {s: by_severity[s] for s in ("critical", "high", "medium", "low") if s in by_severity},
        "blocking": blocking,
        "waivers": {"applied": sorted(applied), "expired": sorted(expired), "unmatched": unmatched_waivers},
        "maintenance": maintenance.summary(checks, unmatched_windows or []),
    }


class GitCommit:
    """`git rev-parse HEAD` in a folder, started now and read with `result()`.

    A run starts it as its checks begin: at the end, the answer is there (the wait for git was
    ~3 ms of the bundle's critical path).
    """

    def __init__(self, root: Path) -> None:
        self._answer: str | None = None
        try:
            self._git: subprocess.Popen[str] | None = subprocess.Popen(
                ["git", "-C", str(root), "rev-parse", "HEAD"],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        except OSError:
            self._git = None

    def result(self) -> str | None:
        """The commit, or None (no git, not a repository, or no answer within 5 s); git is reaped once read."""
        git, self._git = self._git, None
        if git is None:
            return self._answer
        try:
            out, _ = git.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            git.kill()
            git.communicate()
            return None
        self._answer = out.strip() or None if git.returncode == 0 else None
        return self._answer

    def close(self) -> None:
        """Reap git when nothing asked for its answer (a run that wrote no bundle)."""
        self.result()


def git_commit(root: Path) -> str | None:
    return GitCommit(root).result()


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"
