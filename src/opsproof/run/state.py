"""The state of one opsproof run, kept under `config.stash`, and how a run starts.

`start_run` reads everything a run needs before any check: the profile, the change
context, the controls, the history store, the signing key, the upload target. Any
mistake there is a usage error (exit 4) before a single target is contacted.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from opsproof.compliance import ComplianceError
from opsproof.compliance.change import change_context
from opsproof.model.controls import ControlMap
from opsproof.model.fields import OwnSeverityCadence, own_severity_cadence
from opsproof.model.shards import Shard, ShardError, parse_run_id, parse_shard
from opsproof.probes import ProbeKind, kind_named
from opsproof.profile import Item, LoadedProfile, ProfileError, load_profile, parse_cli_vars, resolve_profile_path
from opsproof.redaction import Redactor
from opsproof.signals.options import check_options as check_signal_options
from opsproof.targets import lazy_catalogue, names
from opsproof.units import utc_now

if TYPE_CHECKING:
    from opsproof.compliance.history_location import Location
    from opsproof.compliance.observations import Observations
    from opsproof.compliance.upload import BucketLock, S3Target
    from opsproof.evidence.signing import Signer
    from opsproof.model.results import Results
    from opsproof.run.gather import Gatherer
    from opsproof.run.scoping import Part
    from opsproof.run.spool import SpoolReader


@dataclass
class RunState:
    """Everything the plugin keeps for one session, under `config.stash`."""

    loaded: LoadedProfile
    fail_on: str
    report_dir: Path
    run_id: str
    started_at: str
    is_worker: bool
    share_dir: Path | None = None  # xdist workers: the controller's spool of facts
    spool: SpoolReader | None = None  # xdist workers: the facts, read from the spool as they come
    gatherer: Gatherer | None = None
    items: list[pytest.Item] = field(default_factory=list)
    # Each check's record: its dict, or a read-only view of its model once made (run.results.Premade).
    records: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    collected_check_ids: set[str] = field(default_factory=set)
    unmatched_waivers: list[dict[str, Any]] = field(default_factory=list)
    unmatched_windows: list[dict[str, Any]] = field(default_factory=list)  # maintenance windows matching no check
    collect_errors: int = 0
    results: Results | None = None  # the results document, once the run has ended
    # Every secret of the run; everything the run writes or shows goes through it.
    redactor: Redactor = field(default_factory=Redactor)
    signalled: str | None = None
    bundle: Path | None = None
    bundle_error: str | None = None
    exit_code: int | None = None
    controls: ControlMap = field(default_factory=lambda: ControlMap(lazy_catalogue))
    change: dict[str, Any] = field(default_factory=dict)
    signer: Signer | None = None
    history: Location | None = None
    past: Observations | None = None  # earlier runs' measures, read once when a check first asks (run/past.py)
    upload: Upload | None = None
    # What happened to the bundle after sealing (history, upload), one line each, shown before the last line.
    shipped: list[str] = field(default_factory=list)
    shipping_errors: list[str] = field(default_factory=list)
    shard: Shard | None = None  # --shard/--zone: this runner probes only the items the shard owns
    # seal-run's collection of what unreported shards would have checked: (kind, item name) pairs.
    only: frozenset[tuple[str, str]] | None = None
    _owned: dict[str, dict[str, Item]] = field(default_factory=dict, repr=False)

    def targets(self, section: str) -> dict[str, Item]:
        """The profile's items of one section that this run probes: all of them, or its shard's."""
        every = self.loaded.profile.targets(section)
        shard, only = self.shard, self.only
        if shard is None and only is None:
            return every
        owned = self._owned.get(section)
        if owned is None:
            owned = self._owned[section] = {
                name: item
                for name, item in every.items()
                if (shard is None or shard.owns(section, name, item.zone)) and (only is None or (section, name) in only)
            }
        return owned

    signals_seconds: float = 0.0  # spent on notifications and metrics at the end of the run

    @property
    def change_ticket(self) -> str | None:
        """The change this run validates (`--change`, or a CI variable), if it names one."""
        ticket = self.change.get("ticket")
        return str(ticket) if ticket else None


@dataclass(frozen=True)
class Upload:
    """Where `--upload` puts the bundle, the retention asked for, and the bucket's lock (checked at start)."""

    target: S3Target
    retain: tuple[int, str] | None
    lock: BucketLock


STATE = pytest.StashKey[RunState]()


def state_of(config: pytest.Config) -> RunState | None:
    return config.stash.get(STATE, None)


def owns_process(config: pytest.Config) -> bool:
    """True for `pytest ...` run as a command, false for pytest.main() or pytester inside a process."""
    return tuple(config.invocation_params.args) == tuple(sys.argv[1:])


def start_run(config: pytest.Config, workerinput: dict[str, Any] | None) -> RunState:
    try:
        cli_vars = parse_cli_vars(config.getoption("var"))
    except ProfileError as exc:
        raise pytest.UsageError(str(exc)) from None
    chosen = config.getoption("profile") or os.environ.get("OPSPROOF_PROFILE") or "demo"
    path = resolve_profile_path(chosen, Path.cwd())
    try:
        shown = str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)
        loaded = load_profile(path, cli_vars=cli_vars, display_path=shown)
    except ProfileError as exc:
        raise pytest.UsageError(f"profile {chosen!r}: {exc}") from None
    # The run's secrets: the profile's `${NAME}` values, and the history store's password below.
    redactor = Redactor()
    redactor.update(loaded.redactor)
    try:
        change = change_context(
            ticket=config.getoption("change"),
            commit=config.getoption("commit"),
            image_digest=config.getoption("image_digest"),
            environ=os.environ,
        )
    except ComplianceError as exc:
        raise pytest.UsageError(str(exc)) from None
    controls = _control_map(loaded)
    report_dir = Path(config.getoption("report_dir") or "reports").absolute()
    if report_dir.exists() and not report_dir.is_dir():
        raise pytest.UsageError(f"--report-dir {str(report_dir)!r} exists and is not a directory")
    history = _history_location(config, report_dir, redactor)
    shard, run_id = _shard(config)
    check_signal_options(config)
    if workerinput is not None and "opsproof_run_id" in workerinput:
        return RunState(
            loaded=loaded,
            fail_on=config.getoption("fail_on"),
            report_dir=report_dir,
            run_id=workerinput["opsproof_run_id"],
            started_at=workerinput["opsproof_started_at"],
            is_worker=True,
            share_dir=Path(workerinput["opsproof_share_dir"]),
            controls=controls,
            change=change,
            history=history,
            shard=shard,
            redactor=redactor,
        )
    state = RunState(
        loaded=loaded,
        fail_on=config.getoption("fail_on"),
        report_dir=report_dir,
        run_id=run_id or uuid.uuid4().hex,
        started_at=utc_now(),
        is_worker=False,
        controls=controls,
        change=change,
        signer=_signer(config),
        history=history,
        upload=_upload(config),
        shard=shard,
        redactor=redactor,
    )
    ping_url = config.getoption("ping")
    # Last: a run refused for a usage error never says it started; --collect-only runs nothing.
    if ping_url is not None and not config.option.collectonly:
        from opsproof.signals.ping import ping

        problem = ping(ping_url, "start")
        if problem is not None:
            state.shipping_errors.append(f"opsproof: the start ping (--ping) failed: {state.redactor.redact(problem)}")
    return state


def _shard(config: pytest.Config) -> tuple[Shard | None, str | None]:
    """--shard/--zone and --run-id; a shard must name its run, or seal-run could not join it to the others."""
    try:
        shard = parse_shard(config.getoption("shard"), config.getoption("zone"), os.environ)
        run_id = parse_run_id(config.getoption("run_id"), os.environ)
    except ShardError as exc:
        raise pytest.UsageError(str(exc)) from None
    if shard is not None and run_id is None:
        raise pytest.UsageError(
            f"{shard.label}: a shard needs the id its run's shards share: --run-id ID or $OPSPROOF_RUN_ID"
        )
    return shard, run_id


def _upload(config: pytest.Config) -> Upload | None:
    """--upload/--retain, checked against the bucket before any check runs: a run must not end unshippable."""
    url, retain_text = config.getoption("upload"), config.getoption("retain")
    if url is None:
        if retain_text is not None:
            raise pytest.UsageError("--retain goes with --upload s3://bucket/prefix")
        return None
    from opsproof.compliance.upload import parse_retain, parse_s3_url, preflight

    try:
        target = parse_s3_url(url, config.getoption("s3_endpoint"))
        retain = parse_retain(retain_text) if retain_text is not None else None
        return Upload(target, retain, preflight(target, retain))
    except ComplianceError as exc:
        raise pytest.UsageError(str(exc)) from None


def _history_location(config: pytest.Config, report_dir: Path, redactor: Redactor) -> Location:
    from opsproof.compliance.history_location import DSN_VARIABLE, locate

    try:
        location = locate(report_dir, config.getoption("history_dsn") or os.environ.get(DSN_VARIABLE))
    except ComplianceError as exc:
        raise pytest.UsageError(str(exc)) from None
    if location.password:  # the command line is recorded in results.json; the password never is
        redactor.add("HISTORY_DSN_PASSWORD", location.password)
    return location


def _signer(config: pytest.Config) -> Signer | None:
    """The --sign-key, loaded before any check runs: a key that does not parse is a usage error."""
    path = config.getoption("sign_key")
    if path is None:
        return None
    from opsproof.evidence.signing import load_signer

    try:
        return load_signer(Path(path))
    except ComplianceError as exc:
        raise pytest.UsageError(str(exc)) from None


def _control_map(loaded: LoadedProfile) -> ControlMap:
    """The catalogue with the profile's `controls:` applied; a key naming no kind is a usage error."""
    overrides = getattr(loaded.profile, "controls", None) or {}
    controls = ControlMap(lazy_catalogue, overrides)
    known = list(names())
    unknown = controls.unknown_kinds(known) if overrides else []
    if unknown:
        raise pytest.UsageError(
            f"profile {loaded.path.name}: controls: unknown kind {unknown[0]!r} (kinds: {', '.join(known)})"
        )
    return controls


def kind_of_path(path: Path) -> ProbeKind[Any, Any] | None:
    """checks/<area>/test_<kind>.py -> the probe kind `<kind>`."""
    if not path.stem.startswith("test_"):
        return None
    try:
        return kind_named(path.stem.removeprefix("test_"))
    except KeyError:
        return None


@dataclass(frozen=True)
class TargetRef:
    """The parameter of a check: which profile item of which kind (and which part of it) it is about."""

    kind: str
    name: str
    part: Part | None = None
    # A check's `item` and `facts` come from these (see `_handed`), not from a lookup by name.
    model: Item = field(kw_only=True, compare=False, repr=False)
    run: RunState = field(kw_only=True, compare=False, repr=False)
    # The profile model of the one aspect the check judges (`connections: {...}`), if it is one.
    aspect: Any = field(default=None, kw_only=True, compare=False, repr=False)

    @property
    def label(self) -> str:
        """The item's name, or `item/part`: the test id and the bracket of the check id."""
        return f"{self.name}/{self.part.name}" if self.part is not None else self.name

    @property
    def _own(self) -> OwnSeverityCadence | None:
        return own_severity_cadence(self.part.spec if self.part is not None else self.aspect)

    @property
    def severity(self) -> str:
        """The part's or aspect's own `severity:` (a query, a pattern, `connections:`), else the item's."""
        own = self._own
        return own.severity if own is not None and own.severity is not None else self.model.effective_severity

    @property
    def cadence(self) -> str | None:
        """The part's or aspect's own `cadence:`, else the item's (None: the kind's default)."""
        own = self._own
        return own.cadence if own is not None and own.cadence is not None else self.model.cadence

    def __repr__(self) -> str:  # shown as the test's parameter (Allure, -v); never a secret
        return f"{self.kind}[{self.label}]"
