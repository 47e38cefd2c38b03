"""The pytest plugin: hooks only. Options, markers, parametrization, fixtures, probing.

What the hooks use lives beside it: `run_state` (the run's state and its start),
`records` (one check's record from pytest's report), `recorder` (the bundle at the end).

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
import signal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import pytest

from opsproof import heap
from opsproof.heap import collector_paused

with collector_paused():  # the run's modules, made for good: no collection walks them (see opsproof.heap)
    from opsproof import outcomes
    from opsproof.errors import hide_plumbing
    from opsproof.judging import maintenance
    from opsproof.model.check import Check
    from opsproof.model.fields import own_cadences
    from opsproof.model.markers import ALL_MARKERS, CADENCE_MARKERS
    from opsproof.probes import Facts, kinds_in_use
    from opsproof.profile import ITEM_SECTIONS, Item, Profile
    from opsproof.run import custom, on_demand, warm
    from opsproof.run.brief_failures import brief_failures
    from opsproof.run.gather import Gatherer, serve_state
    from opsproof.run.quiet import Quiet, skip_capture
    from opsproof.run.records import (
        AllureAnnotator,
        build_record,
        check_of,
        identity,
        markers_of,
        redact_report,
        waiver_dict,
    )
    from opsproof.run.scoping import Part, aspect_of, item_applies, parts_of
    from opsproof.run.state import STATE, RunState, TargetRef, kind_of_path, owns_process, start_run, state_of
    from opsproof.run.worker_policy import Declined, decline_workers
    from opsproof.run.worker_policy import add_option as add_worker_option
    from opsproof.signals.options import add_options as add_signal_options

if TYPE_CHECKING:
    from opsproof.compliance.observations import Observations

# pytest shows a check whose target has no facts by its message, not these frames (opsproof.errors.NoFacts).
__tracebackhide__ = hide_plumbing


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    config = pluginmanager.get_plugin("pytestconfig")
    if config is not None:  # called as pytest registers the plugin: the start of the run (see opsproof.heap)
        heap.pause_for_the_start(config)
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
    scale = parser.getgroup("opsproof-scale", "opsproof shards: one run over many runners (see seal-run)")
    scale.addoption(
        "--shard",
        default=None,
        metavar="I/N|auto",
        help="probe only shard I of N (0-based; a stable hash of kind and item name); "
        "auto: I from $JOB_COMPLETION_INDEX, N from $OPSPROOF_SHARDS",
    )
    scale.addoption("--zone", default=None, metavar="NAME", help="probe only the items labelled `zone: NAME`")
    scale.addoption(
        "--run-id",
        default=None,
        metavar="ID",
        help="the run's id, shared by its shards (default: $OPSPROOF_RUN_ID, else a new one)",
    )
    add_worker_option(parser)
    add_signal_options(parser)
    parser.addini("opsproof", type="bool", default=False, help="run opsproof checks without --profile")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    """Without the ini, look for initial conftests in checks/ only, as collection will (see pytest_configure).

    pytest looks for its ini before plugins add their options, so in `--profile /elsewhere/p.yaml`
    it takes the path for a test path: it finds no pyproject.toml above it, loses `testpaths =
    checks`, and would import the conftest.py of every test* folder of the repository (tests/
    needs the test extras). Written with `=`, or as a name, the value is no path and nothing of this happens.
    First, the probe processes of the profile's kinds fork, to import their libraries while the
    profile loads (`opsproof.run.warm`); then the blocked plugins the command line asks for are
    loaded (`opsproof.run.on_demand`).
    """
    warm.start_for_run(early_config, serve_state)
    on_demand.load_asked_for(early_config, parser, args)
    known = early_config.known_args_namespace
    checks = early_config.invocation_params.dir / "checks"
    if early_config.inipath is None and not known.file_or_dir and checks.is_dir():
        known.file_or_dir = [str(checks)]


def _asked(config: pytest.Config) -> bool:
    """Whether this pytest is an opsproof run (the ini's `opsproof = true`, or an opsproof option).

    Any opsproof option asks for a run: pytest finds its ini before entry-point plugins add
    their options, so `--report-dir /elsewhere` can hide the ini (and its `opsproof = true`).
    """
    return bool(config.getini("opsproof")) or any(
        config.getoption(name) not in (None, []) for name in ("profile", "report_dir", "var", "shard", "zone")
    )


def pytest_cmdline_main(config: pytest.Config) -> None:
    """`-n N` where workers cannot help: one process instead (run/worker_policy.py).

    A plain implementation: after xdist's (tryfirst), which has turned `-n` into `dist` and
    `tx`, and before its pytest_configure, which would start the workers.
    """
    if _asked(config) and not (config.option.help or config.option.markers):
        line = decline_workers(config)
        if line is not None:
            config.pluginmanager.register(Declined(line), "opsproof-workers-declined")


def pytest_configure(config: pytest.Config) -> None:
    for name, description in ALL_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")
    config.addinivalue_line("markers", custom.MARKER_HELP)
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    run = _asked(config) or bool(workerinput and "opsproof_run_id" in workerinput)
    if not (run and owns_process(config)):  # no opsproof run, or one inside pytest.main: the collector as it was
        heap.resume_after_the_start()
    if not run:
        return
    if config.option.help or config.option.markers:  # information only: no profile needed
        return
    state = start_run(config, workerinput)
    config.stash[STATE] = state
    if config.getoption("allure_report_dir", None):  # registered only then: one hook less per check
        config.pluginmanager.register(AllureAnnotator(state.redactor), "opsproof-allure")
    config.option.strict_markers = True  # CONTRACT §1: markers are strict, whatever the ini says
    if config.args_source != pytest.Config.ArgsSource.ARGS and (Path.cwd() / "checks").is_dir():
        # No paths given: the checks of the repository root, even when the ini was not found.
        config.args[:] = [str(Path.cwd() / "checks")]
    if state.is_worker:
        from opsproof.run.workers import WorkerHooks

        config.pluginmanager.register(WorkerHooks(), "opsproof-xdist-worker")
    else:
        from opsproof.run.workers import XdistHooks, is_distributed

        xdist = XdistHooks(state) if is_distributed(config) else None
        if not config.option.collectonly:
            # The probe processes start now, so they are ready when the checks are collected.
            # Under pytest-xdist they probe for every worker, through a spool (run/spool.py).
            # Before anything the probes do not need is imported: every import before the
            # fork delays the first request (tests/core/test_startup_order.py).
            state.gatherer = _gatherer(state, xdist.spool if xdist else None)
            state.gatherer.prepare(early=_early_targets(config, state))
            config.add_cleanup(state.gatherer.stop)
        # Here, not at import: a pytest run without opsproof (the plugin loads for every
        # pytest in this environment) never imports what writes bundles.
        from opsproof.run.recorder import Recorder

        config.pluginmanager.register(Recorder(config, state), "opsproof-recorder")
        if xdist is not None:
            config.pluginmanager.register(xdist, "opsproof-xdist")
        _trap_sigterm(config, state)
        _skip_final_collection()


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
        for name, item in state.targets(kind.section).items():
            # Parts of their own cadence may leave no check of this one: such an item waits for collection.
            if (item.cadence or kind.cadence) == cadence and not own_cadences(item) - {cadence}:
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


def _restore_sigterm(previous: Any) -> None:
    signal.signal(signal.SIGTERM, previous)


# -- collection ---------------------------------------------------------------------------


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave out checks/<area>/test_<kind>.py when the profile has no items of that kind.

    Its checks would apply to nothing and be dropped anyway; not importing the module
    (and its probe's) saves a run of one kind the time every other kind's code costs.
    """
    state = state_of(config)
    if state is None or collection_path.suffix != ".py" or collection_path.parent.parent.name != "checks":
        return None
    section = collection_path.stem.removeprefix("test_")
    unused = collection_path.stem.startswith("test_") and section in ITEM_SECTIONS
    return True if unused and not state.targets(section) else None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    state = state_of(metafunc.config)
    if state is None or "target" not in metafunc.fixturenames:
        return
    kind = kind_of_path(Path(metafunc.definition.path))
    if kind is None:
        return
    refs = []
    # The area markers come from the kind's declaration (targets/<kind>.py), the one place that says them.
    areas = [getattr(pytest.mark, area) for area in kind.declared.areas]
    for name, target in state.targets(kind.section).items():
        if not item_applies(metafunc.function, target):
            continue
        parts = parts_of(metafunc.function, target)
        item_post_deploy = kind.declared.post_deploy if target.post_deploy is None else target.post_deploy
        for part in [None] if parts is None else parts:
            aspect = aspect_of(metafunc.function, target, kind.declared.aspect_keys) if part is None else None
            ref = TargetRef(kind.name, name, part, model=target, run=state, aspect=aspect)
            cadence = getattr(pytest.mark, ref.cadence or kind.cadence)
            # A part (a query, a KPI) may join the post-deploy gate on its own, or leave it.
            part_post_deploy = getattr(part.spec, "post_deploy", None) if part is not None else None
            gated = item_post_deploy if part_post_deploy is None else part_post_deploy
            marks = [cadence, *areas, pytest.mark.post_deploy] if gated else [cadence, *areas]
            refs.append(pytest.param(ref, id=ref.label, marks=marks))
    # Direct parametrization: each check's `item`, `check` and `facts` are then handed
    # from its TargetRef (see `_handed`) without a fixture lookup by name.
    metafunc.parametrize("target", refs)


@pytest.hookimpl(wrapper=True)
def pytest_collection(session: pytest.Session) -> Any:
    """Collect with the cyclic collector paused (see opsproof.heap); the heap is frozen after."""
    if state_of(session.config) is None or not owns_process(session.config):
        return (yield)
    with collector_paused():
        return (yield)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    state = state_of(config)
    if state is None:
        return
    # A kind with no items in the profile leaves one NOTSET placeholder per check; drop them.
    items[:] = [i for i in items if not _is_placeholder(i)]
    if state.shard is not None or state.only is not None:
        items[:] = [i for i in items if _is_kind_check(i) or custom.runs_in(i, state.shard, state.only)]
    _share_locations(items)
    brief_failures([item for item in items if _is_kind_check(item)])
    refused: set[tuple[object, str]] = set()
    for item in items:
        cadences = [name for name in markers_of(item) if name in CADENCE_MARKERS]
        if len(set(cadences)) != 1:
            raise pytest.UsageError(
                f"{item.nodeid}: a check needs exactly one cadence marker "
                f"({', '.join(CADENCE_MARKERS)}); has {cadences or 'none'}"
            )
        function = (item.parent, getattr(item, "originalname", item.name))
        if function not in refused and _is_kind_check(item):
            # Once per function: its checks differ only in their params' marks, which are opsproof's own.
            custom.refuse_on_kind_checks(item)
            refused.add(function)
        state.collected_check_ids.add(identity(item)[0])  # a check of one's own: its marker is checked here
    state.unmatched_waivers = [
        waiver_dict(w)
        for w in state.loaded.profile.waivers
        if not any(w.matches(check_id) for check_id in state.collected_check_ids)
    ]
    state.unmatched_windows = maintenance.unmatched(state.loaded.profile.maintenance, state.collected_check_ids)
    if state.is_worker:
        config.workeroutput["opsproof_unmatched_waivers"] = state.unmatched_waivers  # type: ignore[attr-defined]
        config.workeroutput["opsproof_unmatched_windows"] = state.unmatched_windows  # type: ignore[attr-defined]


@pytest.hookimpl(tryfirst=True)  # before xdist's, which tells the controller that this worker has collected
def pytest_collection_finish(session: pytest.Session) -> None:
    """An xdist worker writes the targets its checks need, for the controller to probe."""
    state = state_of(session.config)
    if state is None or state.share_dir is None:
        return
    from opsproof.run.spool import write_wanted

    config = session.config
    broken = session.testsfailed and not config.option.continue_on_collection_errors
    write_wanted(state.share_dir, {} if broken or config.option.collectonly else _wanted(session.items))


def _share_locations(items: list[pytest.Item]) -> None:
    """Give each kind's check its `location` from the first check of the same function.

    pytest works out every item's location on its own (its file and line: a `stat` of the
    file and a walk of the function's code, ~0.02 ms a check); a kind's checks are one
    function parametrized over the profile's items, so all but the name are the same.
    The name is pytest's own for a function at a module's top level: the item's name.
    """
    first: dict[tuple[object, str], tuple[str, int | None]] = {}
    for item in items:
        if not (_is_kind_check(item) and isinstance(item, pytest.Function) and isinstance(item.parent, pytest.Module)):
            continue
        key = (item.parent, item.originalname)
        known = first.get(key)
        if known is None:
            path, line, _ = item.location
            first[key] = (path, line)
        else:
            item.__dict__["location"] = (*known, item.name)  # the cached_property's own slot


def _past_of(state: RunState) -> Observations:
    # Imported at the first check, not with the plugin: the trends reader and the history's module
    # (~40 ms uncompiled) are then loaded while the run waits for facts, not before its first probe.
    if state.past is not None:  # made by the first check (every check asks: no import statement each)
        return state.past
    from opsproof.run.past import past_of

    return past_of(state)


def _is_kind_check(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return callspec is not None and isinstance(callspec.params.get("target"), TargetRef)


def _is_placeholder(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    return callspec is not None and "target" in callspec.params and not isinstance(callspec.params["target"], TargetRef)


# -- fixtures -----------------------------------------------------------------------------


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
def check(request: pytest.FixtureRequest) -> Check:
    """The record in progress: observed facts, expectations, warnings; a check of one's own gets one too."""
    node = request.node
    if _is_kind_check(node):
        return _handed(node, "check")["check"]  # type: ignore[no-any-return]
    _require_state(request)
    return check_of(node)


@pytest.fixture
def profile(request: pytest.FixtureRequest) -> Profile:
    """The run's profile (`--profile`): a check of one's own reads its targets' settings here."""
    return _require_state(request).loaded.profile


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
        state_of(item.config) is not None
        and callspec is not None
        and isinstance(callspec.params.get("target"), TargetRef)
    ):
        _handed(item)


def _handed(node: pytest.Item, *asked: str) -> dict[str, Any]:
    """A check's `item`, `check` and `facts` (those it uses, or `asked`), once; raises if its probe failed."""
    funcargs: dict[str, Any] = getattr(node, "funcargs", {})
    ref = node.callspec.params["target"]  # type: ignore[attr-defined]  # the fixtures require `target`
    wants = asked or getattr(node, "fixturenames", ())
    if not asked:
        # The parameter itself and the request, as pytest's fixture pass would set them: the pass
        # then resolves nothing (resolving the parametrized `target` alone cost ~0.1 ms a check).
        funcargs.setdefault("target", ref)
        if "request" in wants:
            funcargs.setdefault("request", node._request)  # type: ignore[attr-defined]
    if "item" in wants and "item" not in funcargs:
        funcargs["item"] = ref.model
    if ("check" in wants or "facts" in wants) and "check" not in funcargs:
        funcargs["check"] = Check(
            check_id=identity(node)[0], kind=ref.kind, target=ref.name, severity=ref.severity, history=_past_of(ref.run)
        )
    if "facts" in wants and "facts" not in funcargs:
        found = _facts_of(ref.run, ref)
        check = funcargs["check"]
        check.observe(**found.observed())
        check.started_at = found.probed_at
        check.duration_s = round(found.elapsed_s, 4)
        funcargs["facts"] = found
    return funcargs


def _gatherer(state: RunState, spool: Path | None = None) -> Gatherer:
    """The run's prober; with a `spool` (an xdist controller's), it streams the facts there for the workers."""
    profile, history, redactor, change = state.loaded.profile, state.history, state.redactor, state.change_ticket
    if spool is not None:
        from opsproof.run.spool import SpoolingGatherer

        return SpoolingGatherer(profile, spool, history=history, redactor=redactor, change=change)
    return Gatherer(profile, history=history, redactor=redactor, change=change)


def _require_state(request: pytest.FixtureRequest) -> RunState:
    state = state_of(request.config)
    if state is None:
        raise pytest.UsageError("opsproof is not active: pass --profile")
    return state


def _wanted(items: list[pytest.Item], uses: dict[tuple[str, str], int] | None = None) -> dict[str, set[str]]:
    """Target names by kind, over the checks that need facts (`uses`: `_uses(items)`, when already counted)."""
    wanted: dict[str, set[str]] = {}
    for kind, name in uses if uses is not None else _uses(items):
        wanted.setdefault(kind, set()).add(name)
    return wanted


def _uses(items: list[pytest.Item]) -> dict[tuple[str, str], int]:
    """How many of the checks ask for each (kind, target)'s facts: after the last, the gatherer drops them."""
    uses: dict[tuple[str, str], int] = {}
    for item in items:
        callspec = getattr(item, "callspec", None)
        ref = callspec.params.get("target") if callspec is not None else None
        if isinstance(ref, TargetRef) and "facts" in getattr(item, "fixturenames", ()):
            key = (ref.kind, ref.name)
            uses[key] = uses.get(key, 0) + 1
    return uses


def _facts_of(state: RunState, target: TargetRef) -> Facts:
    if state.share_dir is not None:  # an xdist worker: the controller probes, the spool brings the facts
        if state.spool is None:
            from opsproof.run.spool import SpoolReader

            state.spool = SpoolReader(state.share_dir)
        return state.spool.facts(target.kind, target.name)
    if state.gatherer is None:  # pytest_runtestloop did not run (a plugin drove the tests itself)
        state.gatherer = _gatherer(state).start(_wanted(state.items))
    return state.gatherer.facts(target.kind, target.name)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """Start probing as the test loop starts, so checks assert while later probes run."""
    state = state_of(session.config)
    if state is None:
        return
    state.items = session.items
    if owns_process(session.config):
        # What exists now (modules, the profile, the collected checks) lives until the
        # process ends: frozen, no collection ever traverses it again. And the collector
        # stays off until the last check (the Recorder turns it on for the bundle): the
        # checks make no cycles to speak of (measured: the same peak either way over 10,000),
        # but its passes over their young objects cost time. Reference counting frees them.
        gc.freeze()
        gc.disable()
        session.config.add_cleanup(gc.enable)
    quiet = skip_capture(session, session.items)
    if quiet is not None:
        session.config.add_cleanup(quiet.undo)
    if state.share_dir is not None or session.config.option.collectonly:
        return
    broken = session.testsfailed and not session.config.option.continue_on_collection_errors
    if quiet is not None and quiet.protocol is not None and not broken:
        session.stash[QUIET] = quiet
    uses = _uses(session.items)
    wanted = _wanted(session.items, uses)
    if wanted and not broken:
        state.gatherer = (state.gatherer or _gatherer(state)).start(wanted, uses)
        # The first check waits for the first probe (~0.2 s for HTTP): the modules that
        # write the bundle load, and report.html's template compiles, in that wait rather
        # than after the last check.
        from opsproof.run.recorder import load_bundle_writers

        load_bundle_writers()


QUIET = pytest.StashKey[Quiet]()  # set when own checks' protocol can leave plugins out


@pytest.hookimpl(specname="pytest_runtestloop")
def pytest_runtestloop_quiet(session: pytest.Session) -> bool | None:
    """The loop pytest would run, own checks through their protocol without what they do without.

    A plain implementation, as pytest's own loop is: registered with this module, it is called
    after the conftests' and later plugins', just before pytest's. Should a plugin registered
    before it implement the hook too (it would be skipped), pytest runs its own loop.
    """
    quiet = session.stash.get(QUIET, None)
    if quiet is None:
        return None
    from opsproof.run.workers import is_distributed

    impls = session.config.hook.pytest_runtestloop.get_hookimpls()  # the last called first
    ours = next(i for i, impl in enumerate(impls) if impl.function is pytest_runtestloop_quiet)
    skipped = [impl for impl in impls[:ours] if not (impl.wrapper or impl.hookwrapper) and impl.plugin_name != "main"]
    return None if skipped or is_distributed(session.config) else quiet.run_checks(session)


# -- records ------------------------------------------------------------------------------


# trylast: innermost of the wrappers, so allure-pytest and junitxml see the final report.
@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report: pytest.TestReport = yield
    state = state_of(item.config)
    if state is None:
        return report
    if state.redactor:
        redact_report(report, state.redactor)
    decisive = (
        report.when == "call"
        or (report.when == "setup" and not report.passed)
        or (report.when == "teardown" and report.failed)
    )
    if decisive:
        record = build_record(item, call, report, state)
        report.opsproof = record  # type: ignore[attr-defined]  # travels to the xdist controller
        window = record.get("maintenance")
        if record["outcome"] == "waived":
            waiver = record["waiver"]
            _show_as_skipped(
                item,
                report,
                f"waived by {waiver['ticket']} ({waiver['reason']}; approved by {waiver['approved_by']}, "
                f"until {waiver['expires']}): {record['message']}",
            )
        elif window:  # shown as skipped (pytest's terminal, --junitxml); the record keeps its outcome
            ticket = f", {window['ticket']}" if window.get("ticket") else ""
            _show_as_skipped(
                item,
                report,
                f"{record['outcome']} inside maintenance window {window['name']} ({window['schedule']}{ticket}): "
                f"{record['message']}",
            )
    return report


def _show_as_skipped(item: pytest.Item, report: pytest.TestReport, reason: str) -> None:
    report.outcome = "skipped"
    report.longrepr = (str(item.path), (item.location[1] or 0) + 1, reason)
