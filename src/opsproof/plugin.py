"""The pytest plugin: options, markers, profile loading, parametrization, fixtures, records.

It is active when an opsproof option is given (`--profile`, `--report-dir`, `--var`) or
the rootdir's ini sets `opsproof = true` (this repository's pyproject does); elsewhere
it only registers its markers, so other projects that share the virtual environment
are untouched.

Check modules are `checks/<area>/test_<kind>.py`; every test in them is
parametrized over the profile's items of `<kind>` (ids from the item names) and
gets three fixtures: `item` (the profile model), `facts` (what the probe saw,
gathered once for the whole run) and `check` (observed/expected/warnings).
"""

from __future__ import annotations

import atexit
import gc
import importlib
import os
import shutil
import signal
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import pytest

from opsproof import outcomes
from opsproof.check import Check, CheckError
from opsproof.check_scope import Part, item_applies, parts_of
from opsproof.compliance import ComplianceError
from opsproof.compliance.change import change_context
from opsproof.controls import ControlMap
from opsproof.gather import FactsByKind, Gatherer, probe_all_shared
from opsproof.markers import ALL_MARKERS, CADENCE_MARKERS
from opsproof.probes import Facts, ProbeKind, kind_named, kinds, kinds_in_use, utc_iso, utc_now
from opsproof.profile import (
    ITEM_SECTIONS,
    Item,
    LoadedProfile,
    ProfileError,
    Waiver,
    load_profile,
    resolve_profile_path,
)
from opsproof.redaction import ACTIVE as ACTIVE_REDACTOR

if TYPE_CHECKING:
    from opsproof.compliance.history import Location
    from opsproof.compliance.upload import BucketLock, S3Target
    from opsproof.evidence.signing import Signer


@dataclass
class RunState:
    """Everything the plugin keeps for one session, under `config.stash`."""

    loaded: LoadedProfile
    fail_on: str
    report_dir: Path
    run_id: str
    started_at: str
    is_worker: bool
    share_dir: Path | None = None
    facts: FactsByKind | None = None  # xdist workers: everything, read from the shared file
    gatherer: Gatherer | None = None
    items: list[pytest.Item] = field(default_factory=list)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    collected_check_ids: set[str] = field(default_factory=set)
    unmatched_waivers: list[dict[str, Any]] = field(default_factory=list)
    collect_errors: int = 0
    signalled: str | None = None
    bundle: Path | None = None
    bundle_error: str | None = None
    exit_code: int | None = None
    controls: ControlMap = field(default_factory=ControlMap)
    change: dict[str, Any] = field(default_factory=dict)
    signer: Signer | None = None
    history: Location | None = None
    upload: Upload | None = None
    # What happened to the bundle after sealing (history, upload), one line each, shown before the last line.
    shipped: list[str] = field(default_factory=list)
    shipping_errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Upload:
    """Where `--upload` puts the bundle, the retention asked for, and the bucket's lock (checked at start)."""

    target: S3Target
    retain: tuple[int, str] | None
    lock: BucketLock


STATE = pytest.StashKey[RunState]()
IDENTITY = pytest.StashKey[tuple[str, str, str | None, str]]()
MARKERS = pytest.StashKey[list[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("opsproof", "opsproof operational checks")
    group.addoption(
        "--profile",
        default=None,
        metavar="NAME|PATH",
        help="environment profile: profiles/NAME.yaml or a path (default: $OPSPROOF_PROFILE, else demo)",
    )
    group.addoption("--report-dir", default=None, metavar="DIR", help="where evidence bundles go (default: reports/)")
    group.addoption(
        "--fail-on",
        default="high",
        choices=outcomes.FAIL_ON_CHOICES,
        help="lowest severity of a failed/error check that makes the run exit 1 (default: high)",
    )
    group.addoption(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a plain (non-secret) value for ${vars.NAME} in the profile; repeatable",
    )
    change = parser.getgroup("opsproof-change", "opsproof change context (recorded in the run metadata)")
    change.addoption(
        "--change",
        default=None,
        metavar="TICKET",
        help="the change ticket this run validates (default: $OPSPROOF_CHANGE)",
    )
    change.addoption(
        "--commit",
        default=None,
        metavar="SHA",
        help="the commit deployed (default: $OPSPROOF_COMMIT, else the CI's: GITHUB_SHA, CI_COMMIT_SHA, GIT_COMMIT...)",
    )
    change.addoption(
        "--image-digest",
        default=None,
        metavar="DIGEST",
        help="the image deployed, sha256:... or name@sha256:... (default: $OPSPROOF_IMAGE_DIGEST, $IMAGE_DIGEST)",
    )
    evidence = parser.getgroup("opsproof-evidence", "opsproof evidence: signing, history, shipping")
    evidence.addoption(
        "--history-dsn",
        default=None,
        metavar="DSN",
        help="record the run in this PostgreSQL (postgresql://...) or sqlite:///PATH history "
        "(default: $OPSPROOF_HISTORY_DSN, else REPORT_DIR/history.sqlite)",
    )
    evidence.addoption(
        "--upload",
        default=None,
        metavar="s3://BUCKET/PREFIX",
        help="also put the bundle in S3 (boto3's credentials); version ids go into the history",
    )
    evidence.addoption(
        "--retain",
        default=None,
        metavar="7y|400d",
        help="with --upload: Object Lock compliance-mode retention for that long (the bucket must have Object Lock)",
    )
    evidence.addoption(
        "--s3-endpoint",
        default=None,
        metavar="URL",
        help="with --upload: an S3-compatible endpoint (default: AWS, or $AWS_ENDPOINT_URL_S3)",
    )
    evidence.addoption(
        "--sign-key",
        default=None,
        metavar="PATH",
        help="sign each manifest with this Ed25519 private key (PEM or OpenSSH; opsproof keygen makes one)",
    )
    parser.addini("opsproof", type="bool", default=False, help="run opsproof checks without --profile")


def pytest_configure(config: pytest.Config) -> None:
    for name, description in ALL_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    # Any opsproof option asks for a run: pytest finds its ini before entry-point plugins add
    # their options, so `--report-dir /elsewhere` can hide the ini (and its `opsproof = true`).
    asked = config.getini("opsproof") or any(
        config.getoption(name) not in (None, []) for name in ("profile", "report_dir", "var")
    )
    if not asked and not (workerinput and "opsproof_run_id" in workerinput):
        return
    if config.option.help or config.option.markers:  # information only: no profile needed
        return
    state = _start_run(config, workerinput)
    config.stash[STATE] = state
    if config.getoption("allure_report_dir", None):  # registered only then: one hook less per check
        config.pluginmanager.register(AllureAnnotator(state), "opsproof-allure")
    config.option.strict_markers = True  # CONTRACT §1: markers are strict, whatever the ini says
    if config.args_source != pytest.Config.ArgsSource.ARGS and (Path.cwd() / "checks").is_dir():
        # No paths given: the checks of the repository root, even when the ini was not found.
        config.args[:] = [str(Path.cwd() / "checks")]
    if not state.is_worker:
        if not (config.option.collectonly or getattr(config.option, "numprocesses", None)):
            # The probe process starts now, so it is ready when the checks are collected.
            state.gatherer = Gatherer(state.loaded.profile, history=state.history).prepare(
                early=_early_targets(config, state)
            )
            config.add_cleanup(state.gatherer.stop)
        config.pluginmanager.register(Recorder(config, state), "opsproof-recorder")
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(XdistHooks(state), "opsproof-xdist")
        _trap_sigterm(config, state)
        _skip_final_collection()


def _start_run(config: pytest.Config, workerinput: dict[str, Any] | None) -> RunState:
    cli_vars = {}
    for pair in config.getoption("var"):
        name, sep, value = pair.partition("=")
        if not sep or not name.isidentifier():
            raise pytest.UsageError(f"--var {pair!r}: expected NAME=VALUE")
        cli_vars[name] = value
    chosen = config.getoption("profile") or os.environ.get("OPSPROOF_PROFILE") or "demo"
    path = resolve_profile_path(chosen, Path.cwd())
    try:
        shown = str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)
        loaded = load_profile(path, cli_vars=cli_vars, display_path=shown)
    except ProfileError as exc:
        raise pytest.UsageError(f"profile {chosen!r}: {exc}") from None
    ACTIVE_REDACTOR.update(loaded.redactor)
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
    history = _history_location(config, report_dir)
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
        )
    return RunState(
        loaded=loaded,
        fail_on=config.getoption("fail_on"),
        report_dir=report_dir,
        run_id=uuid.uuid4().hex,
        started_at=utc_now(),
        is_worker=False,
        controls=controls,
        change=change,
        signer=_signer(config),
        history=history,
        upload=_upload(config),
    )


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


def _history_location(config: pytest.Config, report_dir: Path) -> Location:
    from opsproof.compliance.history import DSN_VARIABLE, locate

    try:
        location = locate(report_dir, config.getoption("history_dsn") or os.environ.get(DSN_VARIABLE))
    except ComplianceError as exc:
        raise pytest.UsageError(str(exc)) from None
    if location.password:  # the command line is recorded in results.json; the password never is
        ACTIVE_REDACTOR.add("HISTORY_DSN_PASSWORD", location.password)
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
    controls = ControlMap(overrides)
    # Only a profile with overrides pays for loading every kind (before the probes fork).
    unknown = controls.unknown_kinds(sorted(kinds())) if overrides else []
    if unknown:
        raise pytest.UsageError(
            f"profile {loaded.path.name}: controls: unknown kind {unknown[0]!r} (kinds: {', '.join(sorted(kinds()))})"
        )
    return controls


def _early_targets(config: pytest.Config, state: RunState) -> dict[str, set[str]]:
    """The targets a plain `pytest -m <cadence>` run will surely check, known before collection.

    That is the cron job's command, and probing these while pytest collects saves the
    collection's time off the run. Anything narrower (-k, explicit paths, a marker
    expression) waits for collection, so nothing unselected is ever contacted.
    """
    option = config.option
    cadence = (option.markexpr or "").strip()
    narrowed = (
        option.keyword
        or getattr(option, "deselect", None)
        or getattr(option, "lf", False)
        or config.args_source == pytest.Config.ArgsSource.ARGS
    )
    if cadence not in CADENCE_MARKERS or narrowed:
        return {}
    checks = Path.cwd() / "checks"
    early: dict[str, set[str]] = {}
    for kind in kinds_in_use(state.loaded.profile).values():
        if not any(checks.glob(f"*/test_{kind.name}.py")):
            continue
        for name, item in state.loaded.profile.targets(kind.section).items():
            if (item.cadence or kind.cadence) == cadence:
                early.setdefault(kind.name, set()).add(name)
    return early


def _trap_sigterm(config: pytest.Config, state: RunState) -> None:
    """SIGTERM (a cron timeout, a CI cancel) ends the run like Ctrl-C: the bundle says interrupted."""
    try:
        previous = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            state.signalled = "SIGTERM"
            raise KeyboardInterrupt("SIGTERM")

        signal.signal(signal.SIGTERM, on_sigterm)
        config.add_cleanup(lambda: _restore_sigterm(previous))
    except ValueError:  # not the main thread: leave signals to whoever owns them
        pass


def _skip_final_collection() -> None:
    """At exit, freeze the heap so the interpreter's last GC pass skips the run's objects.

    Measured: ~0.3 s of a 1,000-check run went to that pass. atexit runs before it, and
    only when the process really ends (never inside an in-process pytester run).
    """
    if not getattr(_skip_final_collection, "registered", False):
        atexit.register(gc.freeze)
        _skip_final_collection.registered = True  # type: ignore[attr-defined]


def _owns_process(config: pytest.Config) -> bool:
    """True for `pytest ...` run as a command, false for pytest.main() or pytester inside a process."""
    return tuple(config.invocation_params.args) == tuple(sys.argv[1:])


def _restore_sigterm(previous: Any) -> None:
    signal.signal(signal.SIGTERM, previous)


def _state(config: pytest.Config) -> RunState | None:
    return config.stash.get(STATE, None)


# -- collection ---------------------------------------------------------------------------


def kind_of_path(path: Path) -> ProbeKind[Any, Any] | None:
    """checks/<area>/test_<kind>.py -> the probe kind `<kind>`."""
    if not path.stem.startswith("test_"):
        return None
    try:
        return kind_named(path.stem.removeprefix("test_"))
    except KeyError:
        return None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave out checks/<area>/test_<kind>.py when the profile has no items of that kind.

    Its checks would apply to nothing and be dropped anyway; not importing the module
    (and its probe's) saves a run of one kind the time every other kind's code costs.
    """
    state = _state(config)
    if state is None or collection_path.suffix != ".py" or collection_path.parent.parent.name != "checks":
        return None
    section = collection_path.stem.removeprefix("test_")
    unused = collection_path.stem.startswith("test_") and section in ITEM_SECTIONS
    return True if unused and not state.loaded.profile.targets(section) else None


@dataclass(frozen=True)
class TargetRef:
    """The parameter of a check: which profile item of which kind (and which part of it) it is about."""

    kind: str
    name: str
    part: Part | None = None
    # A check's `item` and `facts` come from these (see `_handed`), not from a lookup by name.
    model: Item = field(kw_only=True, compare=False, repr=False)
    run: RunState = field(kw_only=True, compare=False, repr=False)

    @property
    def label(self) -> str:
        """The item's name, or `item/part`: the test id and the bracket of the check id."""
        return f"{self.name}/{self.part.name}" if self.part is not None else self.name

    def __repr__(self) -> str:  # shown as the test's parameter (Allure, -v); never a secret
        return f"{self.kind}[{self.label}]"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    state = _state(metafunc.config)
    if state is None or "target" not in metafunc.fixturenames:
        return
    kind = kind_of_path(Path(metafunc.definition.path))
    if kind is None:
        return
    refs = []
    for name, target in state.loaded.profile.targets(kind.section).items():
        if not item_applies(metafunc.function, target):
            continue
        parts = parts_of(metafunc.function, target)
        cadence = getattr(pytest.mark, target.cadence or kind.cadence)
        for part in [None] if parts is None else parts:
            ref = TargetRef(kind.name, name, part, model=target, run=state)
            refs.append(pytest.param(ref, id=ref.label, marks=[cadence]))
    # Direct parametrization: each check's `item`, `check` and `facts` are then handed
    # from its TargetRef (see `_handed`) without a fixture lookup by name.
    metafunc.parametrize("target", refs)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    state = _state(config)
    if state is None:
        return
    # A kind with no items in the profile leaves one NOTSET placeholder per check; drop them.
    items[:] = [i for i in items if not _is_placeholder(i)]
    for item in items:
        cadences = [name for name in _markers(item) if name in CADENCE_MARKERS]
        if len(set(cadences)) != 1:
            raise pytest.UsageError(
                f"{item.nodeid}: a check needs exactly one cadence marker (daily, weekly, monthly); "
                f"has {cadences or 'none'}"
            )
        state.collected_check_ids.add(identity(item, state)[0])
    state.unmatched_waivers = [
        _waiver_dict(w)
        for w in state.loaded.profile.waivers
        if not any(w.matches(check_id) for check_id in state.collected_check_ids)
    ]
    if state.is_worker:
        config.workeroutput["opsproof_unmatched_waivers"] = state.unmatched_waivers  # type: ignore[attr-defined]


def _is_placeholder(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return callspec is not None and "target" in callspec.params and not isinstance(callspec.params["target"], TargetRef)


# -- fixtures -----------------------------------------------------------------------------


def identity(item: pytest.Item, state: RunState) -> tuple[str, str, str | None, str]:
    """(check id, kind, target name, severity) of a collected check; worked out once per item."""
    known = item.stash.get(IDENTITY, None)
    if known is None:
        known = item.stash[IDENTITY] = _identity(item, state)
    return known


def _identity(item: pytest.Item, state: RunState) -> tuple[str, str, str | None, str]:
    kind = kind_of_path(item.path)
    kind_name = kind.name if kind else item.path.stem.removeprefix("test_")
    aspect = getattr(item, "originalname", item.name).removeprefix("test_")
    callspec = getattr(item, "callspec", None)
    ref = callspec.params.get("target") if callspec is not None else None
    target = ref.name if isinstance(ref, TargetRef) else None
    severity = "high"
    if kind is not None and target is not None:
        severity = state.loaded.profile.targets(kind.section)[target].effective_severity
    check_id = f"{kind_name}.{aspect}" + (f"[{ref.label}]" if isinstance(ref, TargetRef) else "")
    return check_id, kind_name, target, severity


@pytest.fixture
def target() -> TargetRef:
    """The profile item a check is about; checks in checks/<area>/test_<kind>.py are parametrized over it."""
    raise pytest.UsageError("this check is not parametrized: put it in checks/<area>/test_<kind>.py of a known kind")


@pytest.fixture(scope="session")
def opsproof_run(request: pytest.FixtureRequest) -> RunState:
    """The state of this run (profile, probes)."""
    return _require_state(request)


@pytest.fixture
def item(target: TargetRef, request: pytest.FixtureRequest) -> Item:
    """The profile model of the target this check is about."""
    return _handed(request.node, "item")["item"]  # type: ignore[no-any-return]


@pytest.fixture
def part(target: TargetRef) -> Part:
    """The part of the item this check is about, for checks marked `@each(...)`."""
    if target.part is None:
        raise pytest.UsageError(f"{target!r}: `part` is only for checks marked @each(...)")
    return target.part


@pytest.fixture
def check(target: TargetRef, request: pytest.FixtureRequest) -> Check:
    """The record in progress: observed facts, expectations, warnings."""
    return _handed(request.node, "check")["check"]  # type: ignore[no-any-return]


@pytest.fixture
def facts(target: TargetRef, request: pytest.FixtureRequest) -> Facts:
    """What the probe saw of this target; every target of the run is probed once, concurrently."""
    return _handed(request.node, "facts")["facts"]  # type: ignore[no-any-return]


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Hand a check its `item`, `check` and `facts` before pytest resolves its fixtures.

    pytest's fixture pass fills only the arguments a check does not have yet, and each
    fixture it runs costs ~0.05 ms (a request, a cache key, finalizers): over 1,000
    checks the three made a tenth of a second. The fixtures above stay the definitions
    (documentation, `getfixturevalue`) and return these same objects.
    """
    callspec = getattr(item, "callspec", None)
    if (
        _state(item.config) is not None
        and callspec is not None
        and isinstance(callspec.params.get("target"), TargetRef)
    ):
        _handed(item)


def _handed(node: pytest.Item, *asked: str) -> dict[str, Any]:
    """A check's `item`, `check` and `facts` (those it uses, or `asked`), once; raises if its probe failed."""
    funcargs: dict[str, Any] = getattr(node, "funcargs", {})
    ref = node.callspec.params["target"]  # type: ignore[attr-defined]  # the fixtures require `target`
    wants = asked or getattr(node, "fixturenames", ())
    if "item" in wants and "item" not in funcargs:
        funcargs["item"] = ref.model
    if ("check" in wants or "facts" in wants) and "check" not in funcargs:
        funcargs["check"] = Check(check_id="", kind=ref.kind, target=ref.name, severity=ref.model.effective_severity)
    if "facts" in wants and "facts" not in funcargs:
        found = _facts_of(ref.run, ref)
        check = funcargs["check"]
        check.observe(**found.observed())
        check.started_at = found.probed_at
        check.duration_s = round(found.elapsed_s, 4)
        funcargs["facts"] = found
    return funcargs


def _require_state(request: pytest.FixtureRequest) -> RunState:
    state = _state(request.config)
    if state is None:
        raise pytest.UsageError("opsproof is not active: pass --profile")
    return state


def _wanted(items: list[pytest.Item]) -> dict[str, set[str]]:
    """Target names by kind, over the checks that need facts."""
    wanted: dict[str, set[str]] = {}
    for item in items:
        callspec = getattr(item, "callspec", None)
        ref = callspec.params.get("target") if callspec is not None else None
        if isinstance(ref, TargetRef) and "facts" in getattr(item, "fixturenames", ()):
            wanted.setdefault(ref.kind, set()).add(ref.name)
    return wanted


def _facts_of(state: RunState, target: TargetRef) -> Facts:
    if state.share_dir is not None:  # an xdist worker: one worker probes for all
        if state.facts is None:
            state.facts = probe_all_shared(state.loaded.profile, _wanted(state.items), state.share_dir, state.history)
        return state.facts[target.kind][target.name]
    if state.gatherer is None:  # pytest_runtestloop did not run (a plugin drove the tests itself)
        state.gatherer = Gatherer(state.loaded.profile, history=state.history).start(_wanted(state.items))
    return state.gatherer.facts(target.kind, target.name)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """Start probing as the test loop starts, so checks assert while later probes run."""
    state = _state(session.config)
    if state is None:
        return
    state.items = session.items
    if _owns_process(session.config):
        # What exists now (modules, the profile, the collected checks) lives until the
        # process ends; frozen, the collector's full passes during the checks and the
        # bundle no longer traverse it (measured ~0.1 s over 1,000 checks).
        gc.freeze()
    if state.share_dir is not None or session.config.option.collectonly:
        return
    wanted = _wanted(session.items)
    if wanted and not (session.testsfailed and not session.config.option.continue_on_collection_errors):
        state.gatherer = (state.gatherer or Gatherer(state.loaded.profile, history=state.history)).start(wanted)
        # The first check waits for the first probe (~0.2 s for HTTP): the modules that
        # write the bundle load in that wait rather than after the last check.
        for module in ("opsproof.evidence.bundle", "opsproof.evidence.results", "opsproof.evidence.terminal"):
            importlib.import_module(module)


# -- records ------------------------------------------------------------------------------


def _markers(item: pytest.Item) -> list[str]:
    """The contract's markers on a check, worked out once per item."""
    known = item.stash.get(MARKERS, None)
    if known is None:
        known = item.stash[MARKERS] = sorted({m.name for m in item.iter_markers() if m.name in ALL_MARKERS})
    return known


def _check_of(item: pytest.Item, state: RunState) -> Check:
    """The check's `check` fixture value, or a bare one when the fixture never ran."""
    check_id, kind, target, severity = identity(item, state)
    found = (getattr(item, "funcargs", None) or {}).get("check")
    if not isinstance(found, Check):
        found = Check(check_id=check_id, kind=kind, target=target, severity=severity)
    found.check_id = check_id
    return found


class AllureAnnotator:
    """With `--alluredir`: each check's severity and observed facts go into its Allure result."""

    def __init__(self, state: RunState) -> None:
        self.state = state

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Any:
        try:
            return (yield)
        finally:
            from opsproof.evidence.allure import annotate

            annotate(_check_of(item, self.state), ACTIVE_REDACTOR)


# trylast: innermost of the wrappers, so allure-pytest and junitxml see the final report.
@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report: pytest.TestReport = yield
    state = _state(item.config)
    if state is None:
        return report
    if ACTIVE_REDACTOR:
        _redact_report(report)
    decisive = (
        report.when == "call"
        or (report.when == "setup" and not report.passed)
        or (report.when == "teardown" and report.failed)
    )
    if decisive:
        record = _record(item, call, report, state)
        report.opsproof = record  # type: ignore[attr-defined]  # travels to the xdist controller
        if record["outcome"] == "waived":
            waiver = record["waiver"]
            report.outcome = "skipped"
            report.longrepr = (
                str(item.path),
                (item.location[1] or 0) + 1,
                f"waived by {waiver['ticket']} ({waiver['reason']}; approved by {waiver['approved_by']}, "
                f"until {waiver['expires']}): {record['message']}",
            )
    return report


def _redact_report(report: pytest.TestReport) -> None:
    if report.longrepr is not None and not isinstance(report.longrepr, tuple):
        report.longrepr = ACTIVE_REDACTOR.redact(str(report.longrepr))
    report.sections = [(title, ACTIVE_REDACTOR.redact(text)) for title, text in report.sections]


def _record(
    item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport, state: RunState
) -> dict[str, Any]:
    check = _check_of(item, state)
    outcome, message = _outcome(call, report, check)
    record: dict[str, Any] = {
        "id": item.nodeid,
        "check": check.check_id,
        "kind": check.kind,
        "target": check.target,
        "markers": _markers(item),
        "controls": _controls(item, check, state),
        "severity": check.severity,
        "outcome": outcome,
        "message": message,
        "observed": check.observed,
        "expected": check.expected,
        "started_at": check.started_at or utc_iso(call.start),
        "duration_s": check.duration_s if check.duration_s is not None else round(call.duration, 4),
        "phase": report.when,
    }
    if outcome in ("failed", "error"):
        _apply_waiver(record, state.loaded.profile.waivers)
    return ACTIVE_REDACTOR.redact_data(record)  # type: ignore[no-any-return]


def _controls(item: pytest.Item, check: Check, state: RunState) -> list[str]:
    aspect = check.check_id.split(".", 1)[-1].split("[", 1)[0]
    target = state.loaded.profile.targets(kind_named(check.kind).section).get(check.target) if check.target else None
    own = getattr(target, "controls", None)  # an item's own `controls:` (attestations) wins
    change = state.change
    validates_change = "post_deploy" in _markers(item) and any(
        change.get(k) for k in ("ticket", "commit", "image_digest")
    )
    return state.controls.controls(
        check.kind,
        aspect,
        check.check_id,
        item_controls=own if isinstance(own, list) else None,
        validates_change=validates_change,
    )


def _outcome(call: pytest.CallInfo[None], report: pytest.TestReport, check: Check) -> tuple[str, str]:
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        return "skipped", reason.removeprefix("Skipped: ")
    if report.passed:
        if check.warnings:
            return "warned", "; ".join(check.warnings)
        return "passed", check.summary or "as expected"
    exc = call.excinfo.value if call.excinfo is not None else None
    if report.when == "call" and isinstance(exc, AssertionError):
        return "failed", _assertion_message(exc)
    if isinstance(exc, (pytest.UsageError, CheckError)):
        return "error", str(exc)
    where = "" if report.when == "call" else f"{report.when} failed: "
    detail = f"{type(exc).__name__}: {exc}" if exc is not None else report.longreprtext.strip().splitlines()[-1]
    return "error", f"{where}{detail}"


def _assertion_message(exc: AssertionError) -> str:
    # pytest's rewriting appends "\nassert <explanation>" to the message; the message is the finding.
    text = str(exc).strip()
    if not text:
        return "assertion failed"
    return text.split("\nassert ", 1)[0].strip() or text.splitlines()[0]


def _apply_waiver(record: dict[str, Any], waivers: list[Waiver]) -> None:
    matching = [w for w in waivers if w.matches(record["check"])]
    if not matching:
        return
    today = datetime.now(UTC).date()
    active = [w for w in matching if w.expires >= today]
    if active:
        record["waiver"] = {**_waiver_dict(active[0]), "status": "applied"}
        record["outcome"] = "waived"
        return
    expired = max(matching, key=lambda w: w.expires)
    record["waiver"] = {**_waiver_dict(expired), "status": "expired"}
    record["message"] += f" (waiver {expired.ticket} expired on {expired.expires}; not applied)"


def _waiver_dict(waiver: Waiver) -> dict[str, Any]:
    data = waiver.model_dump(mode="json")
    return {key: data[key] for key in ("check", "reason", "ticket", "approved_by", "expires")}


# -- the end of a run ---------------------------------------------------------------------


class Recorder:
    """Controller-only: collects the records of every check and writes the evidence bundle."""

    def __init__(self, config: pytest.Config, state: RunState) -> None:
        self.config = config
        self.state = state

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        # A checks module that cannot be collected is a bug in the suite: an internal error.
        if report.failed:
            self.state.collect_errors += 1

    def pytest_report_teststatus(self, report: pytest.TestReport) -> Any:
        record = getattr(report, "opsproof", None)
        if not record:
            return None
        outcome = record["outcome"]
        if outcome == "warned":
            return "warned", "W", ("WARNED", {"yellow": True})
        if outcome == "waived":
            return "waived", "w", ("WAIVED", {"yellow": True})
        if outcome == "error" and report.when == "call":
            return "error", "E", ("ERROR", {"red": True})
        return None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = getattr(report, "opsproof", None)
        if not record:
            return
        previous = self.state.records.get(report.nodeid)
        # A teardown error spoils a passing check; it never hides an earlier finding.
        if previous is None or previous["outcome"] in ("passed", "warned"):
            self.state.records[report.nodeid] = record

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        # pytest raises its own Interrupted (a KeyboardInterrupt) for collection errors and -x.
        if self.state.signalled is None and not isinstance(excinfo.value, pytest.Session.Interrupted):
            self.state.signalled = "SIGINT"

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> Any:
        state = self.state
        if state.gatherer is not None:
            state.gatherer.stop()
        if session.config.option.collectonly:  # nothing was checked: no evidence to seal
            return (yield)
        state.exit_code = _exit_code(state, int(exitstatus))
        try:
            from opsproof.evidence.bundle import write_bundle
            from opsproof.evidence.results import build_results

            results = build_results(self.config, state)
            state.bundle = write_bundle(results, state.report_dir, ACTIVE_REDACTOR, state.signer)
        except Exception as exc:  # the evidence is the product: failing to write it is an internal error
            state.bundle_error = f"{type(exc).__name__}: {exc}"
            state.exit_code = outcomes.EXIT_INTERNAL
        if state.bundle is not None:
            _ship(state)
        session.exitstatus = state.exit_code
        try:
            return (yield)
        finally:
            _print_last_line(self.config, state)
            if _owns_process(self.config):
                # pytest's unraisable-exception cleanup runs gc.collect() twice after this;
                # frozen, the run's objects are not traversed again (measured ~0.1 s per
                # 1,000 checks). The process ends right after, so nothing is kept for long.
                gc.freeze()

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        from opsproof.evidence.terminal import write_summary

        write_summary(terminalreporter, self.state)


def _exit_code(state: RunState, pytest_status: int) -> int:
    if state.signalled is not None:
        return outcomes.EXIT_INTERRUPTED
    if state.collect_errors or pytest_status == outcomes.EXIT_INTERNAL:
        return outcomes.EXIT_INTERNAL
    if pytest_status == outcomes.EXIT_INTERRUPTED:
        return outcomes.EXIT_INTERRUPTED
    if pytest_status == outcomes.EXIT_USAGE:
        return outcomes.EXIT_USAGE
    if not state.records:
        return outcomes.EXIT_NO_CHECKS
    blocking = any(outcomes.is_blocking(r["outcome"], r["severity"], state.fail_on) for r in state.records.values())
    return outcomes.EXIT_BLOCKING if blocking else outcomes.EXIT_OK


def _ship(state: RunState) -> None:
    """After sealing: upload the bundle (when asked), then record the run in the history store.

    The bundle is the evidence and stays whatever happens here; a failure is an internal
    error (exit 3) that says how to recover, since the history is rebuilt from bundles
    (and their upload receipts).
    """
    from opsproof.compliance.history import History, HistoryError
    from opsproof.evidence.manifest import manifest_sha256

    assert state.bundle is not None and state.history is not None
    receipt = _upload_bundle(state) if state.upload is not None else None
    try:
        with History(state.history) as history:
            history.record_bundle(state.bundle, manifest_sha256(state.bundle), upload=receipt)
        state.shipped.append(f"opsproof: recorded in the history {state.history.shown}")
    except Exception as exc:
        reason = str(exc) if isinstance(exc, HistoryError) else f"{type(exc).__name__}: {exc}"
        state.shipping_errors.append(
            f"opsproof: the run is NOT in the history ({ACTIVE_REDACTOR.redact(reason)}); "
            "the bundle is intact: `opsproof history rebuild` recovers it"
        )
        state.exit_code = outcomes.EXIT_INTERNAL


def _upload_bundle(state: RunState) -> dict[str, Any] | None:
    from opsproof.compliance.upload import describe_error, describe_receipt, upload_bundle, write_receipt

    assert state.bundle is not None and state.upload is not None
    upload = state.upload
    try:
        receipt = upload_bundle(state.bundle, upload.target, upload.retain, upload.lock)
    except Exception as exc:
        state.shipping_errors.append(
            f"opsproof: the bundle was NOT uploaded to {upload.target.url} ({describe_error(exc)}); it is intact here"
        )
        state.exit_code = outcomes.EXIT_INTERNAL
        return None
    write_receipt(state.report_dir, state.bundle.name, receipt)
    state.shipped.append(describe_receipt(receipt))
    return receipt


def _print_last_line(config: pytest.Config, state: RunState) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    for note in map(ACTIVE_REDACTOR.redact, state.shipping_errors):
        if reporter is not None:
            reporter.write_line(note, red=True)
        else:
            print(note)
    status = outcomes.RUN_STATUS.get(state.exit_code or 0, "failed")
    if state.bundle is not None:
        line = f"opsproof: {status} (exit {state.exit_code}); evidence bundle: {_shown(state.bundle)}"
    else:
        line = f"opsproof: could not write the evidence bundle: {state.bundle_error} (exit {state.exit_code})"
    if reporter is not None:
        reporter.write_line(line, bold=True, red=state.exit_code != 0, green=state.exit_code == 0)
    else:
        print(line)


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class XdistHooks:
    """Controller-side xdist wiring: share the run id and a facts folder, collect worker output."""

    def __init__(self, state: RunState) -> None:
        self.state = state
        self.share_dir: Path | None = None

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        if self.share_dir is None:
            self.share_dir = Path(tempfile.mkdtemp(prefix="opsproof-facts-"))
        node.workerinput["opsproof_run_id"] = self.state.run_id
        node.workerinput["opsproof_started_at"] = self.state.started_at
        node.workerinput["opsproof_share_dir"] = str(self.share_dir)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", {}) or {}
        unmatched = output.get("opsproof_unmatched_waivers")
        if unmatched is not None:
            self.state.unmatched_waivers = unmatched

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.share_dir is not None:
            shutil.rmtree(self.share_dir, ignore_errors=True)
