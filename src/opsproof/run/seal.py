"""`opsproof seal-run DIR|s3://...`: the shard bundles of one run made into one run bundle.

The shards of a run (`pytest --shard I/N --run-id R`, one per pod of an Indexed Job)
each write a sealed shard bundle that joins no chain. Sealing the run verifies every
shard bundle of R, takes the records of the complete shards as they are, and gives
every check a missing, unverifiable or interrupted shard owned an `error` record that
says "shard I did not report" (which checks those are comes from collecting the
profile's checks for that shard's items, exactly as the shard would have). Then one
run bundle is written (results.json over every shard, report.html, junit.xml, and a
manifest naming each shard manifest's sha256), appended to the environment's chain
and recorded in the history once. `--fail-on` and the exit status apply to the run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import re
import shlex
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from opsproof import outcomes
from opsproof.compliance import ComplianceError
from opsproof.model.shards import Shard, ShardError, parse_run_id
from opsproof.run.shard_bundles import (
    ShardBundle,
    ShardState,
    discover_run,
    expected_shards,
    find_shard_bundles,
    match_shards,
    verify_shards,
)
from opsproof.units import utc_now
from opsproof.version import __version__

if TYPE_CHECKING:
    from opsproof.compliance.history import Location
    from opsproof.model.results import Results
    from opsproof.profile import LoadedProfile
    from opsproof.run.state import Upload


@dataclass
class SealRequest:
    """What `opsproof seal-run` was asked (see cli.py for each option's help)."""

    source: str
    run_id: str | None = None
    shards: int | None = None
    profile: str | None = None
    cli_vars: dict[str, str] = field(default_factory=dict)
    report_dir: Path | None = None
    fail_on: str = "high"
    history_dsn: str | None = None
    sign_key: Path | None = None
    public_key: Path | None = None
    upload: str | None = None
    retain: str | None = None
    s3_endpoint: str | None = None
    wait_s: float = 0.0
    poll_s: float = 5.0
    command: list[str] = field(default_factory=list)  # as typed, for results.json (secrets redacted)


@dataclass
class Sealed:
    """The run bundle written and what happened after (shipping), for the CLI to print."""

    bundle: Path
    exit_code: int
    shards: list[ShardState]
    lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def seal_run(request: SealRequest) -> Sealed:
    """Everything that can be a usage error is checked before a shard is read (ComplianceError: exit 4)."""
    from opsproof.compliance.history import DSN_VARIABLE, locate
    from opsproof.profile import ProfileError, load_profile, resolve_profile_path

    remote = request.source.startswith("s3://")
    if not remote and not Path(request.source).is_dir():
        raise ComplianceError(f"seal-run {request.source!r}: not a folder of shard bundles (or s3://bucket/prefix)")
    try:
        run_id = parse_run_id(request.run_id, os.environ)
    except ShardError as exc:
        raise ComplianceError(str(exc)) from None
    if request.shards is not None and not 1 <= request.shards <= 10_000:
        raise ComplianceError(f"--shards {request.shards}: expected 1 to 10000")
    chosen = request.profile or os.environ.get("OPSPROOF_PROFILE") or "demo"
    try:
        loaded = load_profile(resolve_profile_path(chosen, Path.cwd()), cli_vars=request.cli_vars)
    except ProfileError as exc:
        raise ComplianceError(f"--profile {chosen!r}: {exc}") from None
    report_dir = (request.report_dir or (Path("reports") if remote else Path(request.source))).absolute()
    history = locate(report_dir, request.history_dsn or os.environ.get(DSN_VARIABLE))
    if history.password:  # the command line is recorded in results.json; the password never is
        loaded.redactor.add("HISTORY_DSN_PASSWORD", history.password)
    signer, public_key, upload = _keys_and_upload(request)
    with _shard_folder(request) as folder:
        bundles = _wait_for_shards(request, folder, run_id, report_dir, history)
        run_id = discover_run(bundles, run_id, _sealed_runs(report_dir))
        mine = [b for b in bundles if b.run_id == run_id]
        _refuse_sealed_twice(run_id, report_dir, history)
        verify_shards(mine, public_key)
        states = match_shards(expected_shards(mine, request.shards), mine)
        _same_profile(states, loaded)
        checks = _records(states, loaded, request)
        results = _results(run_id, loaded, states, checks, request)
        return _write_and_ship(results, states, report_dir, history, loaded, signer, upload)


def _keys_and_upload(request: SealRequest) -> tuple[Any, Any, Upload | None]:
    from opsproof.evidence.signing import load_public_key, load_signer

    signer = load_signer(request.sign_key) if request.sign_key is not None else None
    public_key = load_public_key(request.public_key) if request.public_key is not None else None
    if request.upload is None:
        if request.retain is not None:
            raise ComplianceError("--retain goes with --upload s3://bucket/prefix")
        return signer, public_key, None
    from opsproof.compliance.upload import parse_retain, parse_s3_url, preflight
    from opsproof.run.state import Upload

    target = parse_s3_url(request.upload, request.s3_endpoint)
    retain = parse_retain(request.retain) if request.retain is not None else None
    return signer, public_key, Upload(target, retain, preflight(target, retain))


@contextlib.contextmanager
def _shard_folder(request: SealRequest) -> Iterator[Path]:
    """The folder holding the shard bundles: the one given, or a download of the S3 prefix's shards."""
    if not request.source.startswith("s3://"):
        yield Path(request.source)
        return
    with tempfile.TemporaryDirectory(prefix="opsproof-shards-") as holder:
        yield Path(holder)


def _download_shards(request: SealRequest, folder: Path, run_id: str | None) -> dict[str, list[str]]:
    """The S3 prefix's shard bundles (of `run_id`, when known) into `folder`; problems found per bundle."""
    from opsproof.compliance.upload import download, parse_s3_url

    target = parse_s3_url(request.source, request.s3_endpoint, option="seal-run")

    def wanted(relative: str) -> bool:
        name = relative.split("/", 1)[0]
        return "-shard" in name and (run_id is None or f"-{run_id[:8]}" in name)

    problems: dict[str, list[str]] = {}
    for found in download(target, folder, wanted):
        problems.setdefault(str(found["path"]).split("/", 1)[0], []).extend(found["problems"])
    return problems


def _wait_for_shards(
    request: SealRequest, folder: Path, run_id: str | None, report_dir: Path, history: Location
) -> list[ShardBundle]:
    """The shard bundles there are; with --wait, polled until every expected shard has one or time is up."""
    deadline = time.monotonic() + request.wait_s
    if request.source.startswith("s3://") and run_id is not None:
        # Poll S3 by listing the shard folders' manifests (cheap); download the bundles once, at the end.
        while time.monotonic() < deadline and not _complete(_listed_shards(request, run_id), request.shards):
            time.sleep(min(request.poll_s, max(0.0, deadline - time.monotonic())))
        deadline = time.monotonic()
    while True:
        s3_problems = _download_shards(request, folder, run_id) if request.source.startswith("s3://") else {}
        bundles = find_shard_bundles(folder)
        for bundle in bundles:  # an S3 object overwritten or hidden after upload: that bundle is not evidence
            bundle.problems.extend(s3_problems.get(bundle.path.name, []))
        if time.monotonic() >= deadline:
            return bundles
        try:
            known = run_id or discover_run(bundles, None, _sealed_runs(report_dir))
        except ComplianceError:
            known = None
        mine = [b for b in bundles if b.run_id == known]
        if known is not None:
            try:
                expected = expected_shards(mine, request.shards)
            except ComplianceError:
                return bundles
            if expected and {b.shard for b in mine} >= set(expected):
                return bundles
        time.sleep(min(request.poll_s, max(0.0, deadline - time.monotonic())))


_FOLDER_SHARD = re.compile(r"-(?:zone-(?P<zone>.+)-)?shard(?P<index>\d+)of(?P<count>\d+)$")


def _listed_shards(request: SealRequest, run_id: str) -> set[tuple[str, int, int]]:
    """(zone, index, count) of the shard folders of `run_id` whose manifest.json is uploaded (it goes last)."""
    from opsproof.compliance.upload import client, describe_error, parse_s3_url

    target = parse_s3_url(request.source, request.s3_endpoint, option="seal-run")
    found: set[tuple[str, int, int]] = set()
    try:
        pages = client(target).get_paginator("list_objects_v2").paginate(Bucket=target.bucket, Prefix=target.prefix)
        for page in pages:
            for entry in page.get("Contents", []):
                name, _, rest = entry["Key"][len(target.prefix) :].partition("/")
                shard = _FOLDER_SHARD.search(name)
                if rest == "manifest.json" and shard is not None and f"-{run_id[:8]}-" in name:
                    found.add((shard["zone"] or "", int(shard["index"]), int(shard["count"])))
    except Exception as exc:
        raise ComplianceError(f"seal-run {request.source}: cannot list it: {describe_error(exc)}") from None
    return found


def _complete(listed: set[tuple[str, int, int]], shards: int | None) -> bool:
    """Every index of every partition listed (and of `--shards N` for the zone-less one) is there."""
    counts = {(zone, count) for zone, _, count in listed} | ({("", shards)} if shards is not None else set())
    return bool(counts) and all((zone, i, n) in listed for zone, n in counts for i in range(n))


def _sealed_runs(report_dir: Path) -> set[str]:
    """Run ids of the run bundles under the report dir (a shard bundle is no run bundle)."""
    from opsproof.evidence.chain import find_environments

    if not report_dir.is_dir():
        return set()
    sealed = set()
    for bundles in find_environments(report_dir).values():
        for path in bundles:
            try:
                sealed.add(str(json.loads((path / "manifest.json").read_text())["run"]["id"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return sealed


def _refuse_sealed_twice(run_id: str, report_dir: Path, history: Location) -> None:
    """A run is one link of its chain: sealing it again would add a second."""
    from opsproof.compliance.history import History

    if run_id in _sealed_runs(report_dir):
        raise ComplianceError(f"run {run_id} is already sealed in {report_dir}")
    # A history that cannot be read is a HistoryError (exit 3): the shards stay, the seal can be run again.
    with History(history) as store:
        rows = store.execute("SELECT bundle FROM runs WHERE run_id = ?", (run_id,))
    if rows:
        raise ComplianceError(f"run {run_id} is already sealed: {rows[0][0]} (history {history.shown})")


def _same_profile(states: list[ShardState], loaded: LoadedProfile) -> None:
    """The checks of a missing shard come from this profile: it must be the one the shards ran."""
    for state in states:
        run = (state.bundle.results or {}).get("run", {}) if state.bundle is not None else {}
        ran = (run.get("profile") or {}).get("sha256")
        if ran is not None and ran != loaded.sha256:
            raise ComplianceError(
                f"--profile {loaded.path.name} (sha256 {loaded.sha256[:16]}...) is not the profile "
                f"{state.bundle.path.name if state.bundle else ''} ran (sha256 {ran[:16]}...)"
            )


def _records(states: list[ShardState], loaded: LoadedProfile, request: SealRequest) -> list[dict[str, Any]]:
    """The complete shards' records, then an `error` for each check an incomplete shard owed."""
    checks: list[dict[str, Any]] = []
    owed: dict[tuple[str, str], str] = {}
    present: set[str] = set()
    for state in states:
        if state.bundle is not None:
            records = (state.bundle.results or {}).get("checks", [])
            checks.extend(records)
            present.update(r["id"] for r in records)
        if state.reason is None:
            continue
        message = f"shard {state.shard.index} did not report ({state.shard.label}: {state.reason})"
        for kind, item in _items_of(state.shard, loaded):
            owed[(kind, item)] = message
    for kind, item, zone in _uncovered(states, loaded):
        owed[(kind, item)] = f"no shard of zone {zone or '(none)'} reported (the run's shards are of other zones)"
    if owed:
        selection = _selection(states)
        collected = collect_unreported(loaded, selection, owed, request.cli_vars)
        checks.extend(r for r in collected if r["id"] not in present)
    return checks


def _items_of(shard: Shard, loaded: LoadedProfile) -> list[tuple[str, str]]:
    """The (kind, item) pairs a shard owns, recomputed from the profile (a missing shard listed none)."""
    from opsproof.profile import ITEM_SECTIONS

    return [
        (section, name)
        for section in ITEM_SECTIONS
        for name, item in loaded.profile.targets(section).items()
        if shard.owns(section, name, item.zone)
    ]


def _uncovered(states: list[ShardState], loaded: LoadedProfile) -> list[tuple[str, str, str | None]]:
    """Items no shard of the run owns: only zone shards leave any (an item of a zone nobody ran)."""
    from opsproof.profile import ITEM_SECTIONS

    shards = [s.shard for s in states]
    if any(shard.zone is None for shard in shards):
        return []  # a partition of every zone: indexes 0..N-1 own every item
    return [
        (section, name, item.zone)
        for section in ITEM_SECTIONS
        for name, item in loaded.profile.targets(section).items()
        if not any(shard.owns(section, name, item.zone) for shard in shards)
    ]


def _selection(states: list[ShardState]) -> dict[str, Any]:
    for state in states:
        if state.bundle is not None:
            return dict((state.bundle.results or {}).get("run", {}).get("selection") or {})
    return {}


def collect_unreported(
    loaded: LoadedProfile, selection: dict[str, Any], owed: dict[tuple[str, str], str], cli_vars: dict[str, str]
) -> list[dict[str, Any]]:
    """Collect (never run) the profile's checks of the owed items, as the shards would have: error records."""
    collector = _Unreported(frozenset(owed), owed, utc_now())
    args = ["--collect-only", "-q", "-p", "no:cacheprovider", "--profile", str(loaded.path)]
    with tempfile.TemporaryDirectory(prefix="opsproof-seal-") as scratch:
        args += ["--report-dir", scratch]
        if selection.get("markers"):
            args += ["-m", str(selection["markers"])]
        if selection.get("keywords"):
            args += ["-k", str(selection["keywords"])]
        for name, value in cli_vars.items():
            args += ["--var", f"{name}={value}"]
        with contextlib.redirect_stdout(io.StringIO()) as said:
            code = pytest.main(args, plugins=[collector])
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        tail = "\n".join(said.getvalue().strip().splitlines()[-5:])
        raise ComplianceError(f"could not collect the checks of the unreported shards (pytest exit {code}):\n{tail}")
    return collector.records


class _Unreported:
    """A pytest plugin: restrict the run to the owed items, and turn each collected check into its record."""

    def __init__(self, only: frozenset[tuple[str, str]], owed: dict[tuple[str, str], str], at: str) -> None:
        self.only, self.owed, self.at = only, owed, at
        self.records: list[dict[str, Any]] = []

    @pytest.hookimpl(trylast=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        from opsproof.run.state import state_of

        state = state_of(config)
        if state is not None:
            state.only = self.only

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        from opsproof.run.records import unreported_record
        from opsproof.run.state import TargetRef, state_of

        state = state_of(session.config)
        assert state is not None
        for item in session.items:
            ref = getattr(item, "callspec", None) and item.callspec.params.get("target")  # type: ignore[attr-defined]
            if isinstance(ref, TargetRef) and (ref.kind, ref.name) in self.owed:
                self.records.append(unreported_record(item, state, self.owed[(ref.kind, ref.name)], self.at))


def _results(
    run_id: str, loaded: LoadedProfile, states: list[ShardState], checks: list[dict[str, Any]], request: SealRequest
) -> Results:
    from opsproof.model.results import SCHEMA, Results
    from opsproof.run.results import current_user, git_commit, summarize

    runs = [(s.bundle.results or {}).get("run", {}) for s in states if s.bundle is not None]
    first = runs[0] if runs else {}
    blocking = any(outcomes.is_blocking(c["outcome"], c["severity"], request.fail_on) for c in checks)
    exit_code = outcomes.EXIT_NO_CHECKS if not checks else outcomes.EXIT_BLOCKING if blocking else outcomes.EXIT_OK
    run = {
        "id": run_id,
        "environment": loaded.profile.environment,
        "profile": {"path": str(loaded.path), "sha256": loaded.sha256},
        "started_at": min((r["started_at"] for r in runs if r.get("started_at")), default=utc_now()),
        "finished_at": utc_now(),
        "selection": _selection(states),
        "suite": {"version": __version__, "commit": git_commit(Path.cwd())},
        "host": platform.node(),
        "user": current_user(),
        "command": loaded.redactor.redact(shlex.join(["opsproof", *request.command])),
        "status": outcomes.RUN_STATUS[exit_code],
        "exit_code": exit_code,
        "fail_on": request.fail_on,
        "vars": first.get("vars") or dict(sorted(loaded.plain_vars.items())),
        "change": first.get("change"),
        "shards": [s.as_dict() for s in states],
    }
    summary = summarize(checks, request.fail_on, _unmatched_waivers(states))
    return Results.model_validate({"schema": SCHEMA, "run": run, "checks": checks, "summary": summary})


def _unmatched_waivers(states: list[ShardState]) -> list[dict[str, Any]]:
    """A waiver is unmatched in the run when it matched no check in any shard that reported."""
    lists = [
        ((s.bundle.results or {}).get("summary") or {}).get("waivers", {}).get("unmatched", [])
        for s in states
        if s.bundle is not None
    ]
    return [w for w in lists[0] if all(w in other for other in lists[1:])] if lists else []


def _write_and_ship(
    results: Results,
    states: list[ShardState],
    report_dir: Path,
    history: Location,
    loaded: LoadedProfile,
    signer: Any,
    upload: Upload | None,
) -> Sealed:
    from opsproof.compliance.shared_chain import fallback_note, head_for
    from opsproof.evidence.bundle import write_bundle
    from opsproof.run.recorder import ship_bundle

    shards = [
        {k: v for k, v in s.as_dict().items() if k in ("index", "count", "zone", "bundle", "manifest_sha256")}
        for s in states
    ]
    head = head_for(report_dir, history)
    bundle = write_bundle(results, report_dir, loaded.redactor, signer, head=head, shards=shards)
    shipped, errors = ship_bundle(bundle, report_dir, history, upload, loaded.redactor)
    note = fallback_note(head)
    if note is not None:
        errors.insert(0, loaded.redactor.redact(note))
    exit_code = outcomes.EXIT_INTERNAL if errors else results.run.exit_code
    return Sealed(bundle, exit_code, states, shipped, errors)
