"""A check's pieces of the bundle made as it ends (`evidence.premade`, `run.results.keep_record`).

The bundle joined from them must be the bytes of the bundle made whole at the end from the
same records (`Results.redacted`, then the whole-document renderers), secrets redacted alike.
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from helpers.pages import HOSTILE, make_check, make_results

from conftest import HttpServer, Runner, http_profile
from opsproof.evidence import bundle as bundle_module
from opsproof.evidence.bundle import write_bundle
from opsproof.evidence.manifest import bundle_files
from opsproof.evidence.premade import Premade
from opsproof.evidence.premake import make_pieces
from opsproof.model.results import CheckRecord, Results
from opsproof.redaction import Redactor, encoded_forms
from opsproof.run.results import Kept, _take_records, keep_record
from opsproof.run.state import RunState

SECRET = "s3cret-Token-2026"
SHORT = "pw7"  # shorter than redaction.SHORT: redacted in free text only where it stands as a word

WAIVER = {
    "check": "http.health[svc-1*]",
    "reason": "known flaky",
    "ticket": "OPS-42",
    "approved_by": "sre",
    "expires": "2027-01-01",
    "status": "applied",
}
WINDOW = {"name": "patching", "checks": "http.*", "schedule": "tue 02:00-04:00 UTC", "ticket": None}


def _records() -> list[dict[str, Any]]:
    """Records of every outcome and shape a run makes, and a few odd ones a check of one's own may."""
    document = make_results(120)
    records: list[dict[str, Any]] = document["checks"]
    records += [
        make_check(200, "failed", "critical", message=f"login refused for {SECRET}"),
        make_check(201, "passed", "low", observed={"body_excerpt": f"token={SECRET}&pw={SHORT}", "status": 200}),
        make_check(202, "waived", "high", waiver=WAIVER, message=f"waived, {SHORT} seen"),
        make_check(203, "failed", "medium", maintenance=WINDOW),
        make_check(204, "error", "high", message=HOSTILE, observed={}, expected={}, target=None),
        make_check(205, "passed", "medium", measures={"latency_ms": 12.5}),
        make_check(206, "warned", "low", observed={"when": dt.datetime(2026, 12, 6, tzinfo=dt.UTC), "pair": (1, 2.5)}),
        make_check(207, "passed", "low", duration_s=1, started_at="not a time", unknown_key="kept"),
        make_check(208, "skipped", "low", observed={"nested": {"a": [1, {"b": None}], "c": "\u00e9\u2603"}}),
    ]
    return records


def _redactor(*secrets: str) -> Redactor:
    redactor = Redactor()
    for number, secret in enumerate(secrets):
        redactor.add(f"SECRET_{number}", secret)
    return redactor


def _head(records: list[dict[str, Any]]) -> dict[str, Any]:
    document = make_results(0)
    document["checks"] = records
    document["run"]["command"] = f"pytest --token {SECRET}"
    document["run"]["change"] = None
    document["summary"]["total"] = len(records)
    return document


def _at_the_end(records: list[dict[str, Any]], redactor: Redactor) -> Results:
    """The document as the bundle showed it before pieces: every record validated, then redacted whole."""
    return Results.model_validate(_head(copy.deepcopy(records))).redacted(redactor)


def _kept_ahead(records: list[dict[str, Any]], redactor: Redactor, made: Redactor | None = None) -> tuple[Results, Premade]:
    """As a run now does it: each record kept as its check ends (`made`: the redactor as it was then)."""
    state = SimpleNamespace(records={str(i): keep_record(r, made or redactor) for i, r in enumerate(records)})
    premade = Premade()
    checks = _take_records(cast(RunState, state), redactor, premade)
    head = Results.model_validate({**_head(records), "checks": []}).redacted(redactor)
    return head.model_copy(update={"checks": checks}), premade


def _files(bundle: Path) -> dict[str, bytes]:
    return {name: (bundle / name).read_bytes() for name in [*bundle_files(bundle), "manifest.json"]}


@pytest.mark.parametrize("in_child", [False, True], ids=["one process", "report.html in a child"])
@pytest.mark.parametrize("secrets", [(), (SECRET, SHORT)], ids=["no secret", "secrets"])
def test_a_bundle_joined_from_pieces_is_the_bundle_made_at_the_end(
    tmp_path: Path, in_child: bool, secrets: tuple[str, ...]
) -> None:
    records = _records()
    redactor = _redactor(*secrets)
    reference = _files(write_bundle(_at_the_end(records, redactor), tmp_path / "end", redactor, redacted_already=True))
    shown, premade = _kept_ahead(records, redactor)
    assert len(premade) == len(records)  # every record's pieces are there to be used
    ahead = _files(
        write_bundle(shown, tmp_path / "ahead", redactor, redacted_already=True, in_child=in_child, premade=premade)
    )
    assert sorted(ahead) == ["junit.xml", "manifest.json", "report.html", "results.json"]
    for name in reference:
        assert ahead[name] == reference[name], name
    for secret in secrets:
        for form in encoded_forms(secret) - {SHORT}:  # a short secret may stand inside a word
            assert all(form.encode() not in data for data in ahead.values()), form
    if secrets:
        assert b"${SECRET_0}" in ahead["results.json"] and b"${SECRET_1}" in ahead["results.json"]


def test_the_pieces_are_what_the_whole_document_renderers_make_of_the_record() -> None:
    """Each piece alone: a renderer given pieces it did not make would still be caught here."""
    from opsproof.evidence.html import check_sort_key
    from opsproof.evidence.html_facts import FactsDrafter
    from opsproof.evidence.html_rows import compact_row
    from opsproof.evidence.junit import junit_chunks
    from opsproof.evidence.record_view import RecordView
    from opsproof.evidence.results_json import json_chunks

    document = Results.model_validate(_head(_records()))
    lines = list(json_chunks(document))[1:]
    cases = list(junit_chunks(document))[1:-1]
    for at, record in enumerate(document.checks):
        pieces = make_pieces(record)
        assert lines[at].startswith(pieces.json) and lines[at][len(pieces.json) :] in (",\n    ", "\n  ]\n}\n")
        assert cases[at] == pieces.junit
        assert compact_row(RecordView(record), "check-7") == '<details id="check-7"' + pieces.row
        assert pieces.key == check_sort_key(RecordView(record))
        assert pieces.draft == FactsDrafter().record(RecordView(record))


def test_pieces_are_used_only_for_the_very_record_they_were_made_of(tmp_path: Path) -> None:
    """A record copied or changed after its pieces were made is rendered as it is now."""
    records = _records()
    redactor = Redactor()
    shown, premade = _kept_ahead(records, redactor)
    changed = [check.model_copy(update={"message": f"changed {i}"}) for i, check in enumerate(shown.checks)]
    document = shown.model_copy(update={"checks": changed})
    with_pieces = _files(write_bundle(document, tmp_path / "with", redactor, redacted_already=True, premade=premade))
    without = _files(write_bundle(document, tmp_path / "without", redactor, redacted_already=True))
    assert with_pieces == without
    assert b"changed 7" in with_pieces["results.json"] and b"changed 7" in with_pieces["report.html"]


def test_a_secret_added_after_a_record_was_kept_is_redacted_at_the_end(tmp_path: Path) -> None:
    """The redactor changed since the record was kept: the record is made again, as at the end."""
    records = _records()
    then = Redactor()
    now = _redactor(SECRET, SHORT)
    kept = keep_record(records[120], then)
    assert isinstance(kept, Kept) and SECRET in kept.pieces.json
    then.update(now)  # the same redactor, with the secrets added after the record was kept
    state = SimpleNamespace(records={"a": kept})
    premade = Premade()
    (record,) = _take_records(cast(RunState, state), then, premade)
    assert len(premade) == 0  # no piece of the record as it was kept
    assert SECRET not in record.message and "${SECRET_0}" in record.message
    assert state.records == {}  # taken out of the run's state


def test_a_record_that_does_not_validate_stays_a_dict_and_fails_the_document_as_before() -> None:
    broken = make_check(1, "passed", "urgent")
    kept_good = keep_record(make_check(2, "passed", "low"), Redactor())
    assert keep_record(broken, Redactor()) is broken
    state = SimpleNamespace(records={kept_good["id"]: kept_good, broken["id"]: broken})  # by node id, as a run keeps them
    with pytest.raises(ValueError):
        _take_records(cast(RunState, state), Redactor(), Premade())
    # Put back for the terminal summary, as dicts.
    assert state.records == {kept_good["id"]: dict(kept_good), broken["id"]: broken}


def test_a_kept_record_reads_as_its_dict() -> None:
    """The run reads a kept record (exit status, summary) as it read the dict it was made of."""
    record = make_check(3, "waived", "high", waiver=WAIVER, maintenance=WINDOW)
    kept = keep_record(copy.deepcopy(record), Redactor())
    assert isinstance(kept, Kept)
    assert dict(kept) == CheckRecord.model_validate(record).dump() == record
    assert kept["outcome"] == "waived" and kept.get("waiver", {}).get("ticket") == "OPS-42"
    assert kept.get("measures") is None and kept["maintenance"]["name"] == "patching"


def test_a_run_makes_the_pieces_while_checks_wait_for_facts_and_writes_the_same_bundle(
    runner: Runner, http_server: HttpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A real run: the records of the checks done are made while a check waits for a slow target.

    The bundle it writes from those pieces is the bundle the whole-document renderers make of
    its results document, and the secret a server echoed is redacted in every file.
    """
    seen: dict[str, Any] = {}
    real = bundle_module.write_bundle

    def spy(results: Results, report_dir: Path, redactor: Redactor, *args: Any, **kwargs: Any) -> Path:
        seen.update(results=results, redactor=redactor, premade=kwargs.get("premade"))
        return real(results, report_dir, redactor, *args, **kwargs)

    monkeypatch.setattr(bundle_module, "write_bundle", spy)
    monkeypatch.setenv("APP_TOKEN", SECRET)
    fast = [f"{{name: echo{i}, url: '{http_server.base}/echo/200/0/e{i}?token=${{APP_TOKEN}}'}}" for i in range(6)]
    runner.profile(http_profile(*fast, f"{{name: slow, url: '{http_server.base}/slow/700'}}"))
    run = runner.run("-m", "daily")
    assert run.ret in (0, 1), run.output
    premade: Premade = seen["premade"]
    # At least the six echo checks before the slow one were made while it waited.
    assert len(premade) >= 6, len(premade)
    results: Results = seen["results"]
    assert sum(premade.get(check) is not None for check in results.checks) == len(premade)
    whole = real(results, tmp_path / "whole", seen["redactor"], redacted_already=True)
    assert _files(run.bundle) == _files(whole)
    texts = {name: data.decode() for name, data in _files(run.bundle).items()}
    assert "${APP_TOKEN}" in texts["results.json"]
    for form in encoded_forms(SECRET):
        assert all(form not in text for text in texts.values()), form


def test_the_recorder_makes_the_oldest_records_first_and_no_more_than_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each record made holds its pieces: past MADE_AT_MOST the records are left for the end, as dicts."""
    from opsproof.run import recorder as recorder_module

    monkeypatch.setattr(recorder_module, "MADE_AT_MOST", 2)
    records = {f"n{i}": make_check(i, "passed", "low") for i in range(3)}
    state = SimpleNamespace(records=dict(records), redactor=Redactor())
    recorder = recorder_module.Recorder(cast(pytest.Config, None), cast(RunState, state))
    recorder._unmade.extend(records)
    assert recorder.make_one() and recorder.make_one()
    assert not recorder.make_one()
    assert [type(state.records[key]) for key in records] == [Kept, Kept, dict]
    assert state.records["n2"] is records["n2"]
