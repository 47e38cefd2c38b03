"""The end of a run: collect every record, write and seal the bundle, ship it, say where it is.

`Recorder` is controller-only (under xdist the workers' reports come to it; `run.workers`
wires the workers to the controller's run).
"""

from __future__ import annotations

import gc
import importlib
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pytest

from opsproof import outcomes
from opsproof.run.state import RunState, Upload, owns_process
from opsproof.signals.after_run import NOTIFICATIONS_FILE, Outcome, export_metrics, github_summary, notify
from opsproof.signals.options import notify_mode

if TYPE_CHECKING:
    from opsproof.compliance.history import Location
    from opsproof.evidence.html_facts import FactsDrafter
    from opsproof.evidence.premade import CheckPieces
    from opsproof.model.results import CheckRecord, Maintenance, Results
    from opsproof.redaction import Redactor
    from opsproof.run.early_recording import EarlyRecording
    from opsproof.run.results import GitCommit


# report.html is rendered by a forked child (beside results.json, junit.xml and the history's rows) when at
# least one record in this many was not made while the checks waited, and at least this many records were
# not. With all of them made, the rest of the page at 1,000 checks is ~15 ms of CPU, and the fork's own cost
# (copying the page tables, then a fault on the first write to each page, in both processes and again as the
# process exits) is as much: a tail of 84-128 ms in-process against 116-146 ms with the child (8 runs each
# alternating, all records made). With none made, the child pays from a few thousand records on (alternating
# runs, the tail's median, load ~2: 1,000 slow checks 104 ms in-process against 129 ms with the child, 3,000
# 250 against 264; against an instant server 2,000 176 against 161, 3,000 293 against 314, 5,000 408 against
# 287, 10,000 876 against 607).
UNMADE_FOR_A_CHILD = 4
UNMADE_FOR_A_CHILD_AT_LEAST = 2500
# The most records made while the checks wait. A record made holds its pieces (~2.5 KiB more than its dict:
# its results.json line, testcase, row and drafted facts) and its history rows (~0.6 KiB, `EarlyRecording.keep`),
# so a run of 10,000 slow checks would hold ~30 MiB more at its end; past this many, the records are left for
# the end, as before.
MADE_AT_MOST = 4000


class Recorder:
    """Controller-only: collects the records of every check and writes the evidence bundle."""

    def __init__(self, config: pytest.Config, state: RunState) -> None:
        self.config = config
        self.state = state
        self._commit: GitCommit | None = None  # the suite's commit, asked as the checks begin
        # The records still dicts, oldest first: made into what the bundle joins while a check waits for facts.
        self._unmade: deque[str] = deque()
        self._drafter: FactsDrafter | None = None  # report.html's facts of the records made, drafted alike
        self._made = 0
        # The run's recording in the history, its store opened while the first checks wait (`EarlyRecording.open`).
        self._early: EarlyRecording | None = None
        self._early_pending = False
        # The pieces of the records made whose history rows are still to be made (`EarlyRecording.keep`).
        self._unkept: deque[CheckPieces] = deque()

    def pytest_runtestloop(self, session: pytest.Session) -> None:
        if session.config.option.collectonly:
            return
        from opsproof.run.results import GitCommit

        self._commit = GitCommit(self.config.rootpath)
        self.config.add_cleanup(self._commit.close)
        state = self.state
        if state.gatherer is not None:
            state.gatherer.while_waiting = self.spare_work
        self._early_pending = self._early_history() is not None

    def _early_history(self) -> Location | None:
        """The history the run's rows may go into before the seal (`EarlyRecording`), or None.

        Only in a process that is the run's own (not an xdist controller: execnet's threads), and not
        for a shard (seal-run records it) nor an upload (the run row carries its receipt).
        """
        state = self.state
        if not owns_process(self.config) or self.config.pluginmanager.has_plugin("opsproof-xdist"):
            return None
        return state.history if state.shard is None and state.upload is None else None

    def spare_work(self) -> bool:
        """One piece of what the end of the run would do, done while a check waits for facts; False: none left.

        The history's store opened first, then one record made (`make_one`); with none left to make,
        one made record's rows in the history (it spares the end less than a record made does).
        """
        if self._early_pending:
            from opsproof.run.early_recording import EarlyRecording

            self._early_pending = False
            assert self.state.history is not None
            self._early = EarlyRecording(self.state.history)
            self.config.add_cleanup(self._early.abandon)  # a run that records nothing closes it (a no-op after)
            self._early.open()
            return True
        if self.make_one():
            return True
        if self._unkept and self._early is not None:
            pieces = self._unkept.popleft()
            self._early.keep(pieces.json, pieces.record)
            return True
        return False

    def make_one(self) -> bool:
        """Keep the oldest record not yet made as its model and its pieces (`run.results.keep_record`).

        Called while a check waits for its facts: the run would be idle then, and each record
        made is work the bundle does not do after the last check. False when none is left.
        """
        from opsproof.run.results import Kept, keep_record

        records = self.state.records
        while self._unmade:
            if self._made >= MADE_AT_MOST:
                self._unmade.clear()
                return False
            nodeid = self._unmade.popleft()
            record = records.get(nodeid)
            if type(record) is dict:  # not made yet (nor taken by the results document)
                if self._drafter is None:
                    from opsproof.evidence.html_facts import FactsDrafter

                    self._drafter = FactsDrafter()
                kept = records[nodeid] = keep_record(record, self.state.redactor, self._drafter)
                if self._early is not None and isinstance(kept, Kept):  # its history rows, made of its line, later
                    self._unkept.append(kept.pieces)
                self._made += 1
                return True
        return False

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
        if record.get("maintenance"):
            return "maintenance", "m", ("MAINTENANCE", {"yellow": True})
        if outcome == "error" and report.when == "call":
            return "error", "E", ("ERROR", {"red": True})
        return None

    @pytest.hookimpl(trylast=True)  # after every other reader of the report (the terminal, junitxml, allure)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = getattr(report, "opsproof", None)
        if not record:
            return
        previous = self.state.records.get(report.nodeid)
        # A teardown error spoils a passing check; it never hides an earlier finding.
        if previous is None or previous["outcome"] in ("passed", "warned"):
            self.state.records[report.nodeid] = record
            if self._made < MADE_AT_MOST:
                self._unmade.append(report.nodeid)
        # pytest's terminal keeps every report to the end: with the record on it, the record could not
        # be let go when the results document takes it (~20 MiB at 10,000 checks). The report keeps
        # what `pytest_report_teststatus` reads of it, for the terminal's closing summary.
        report.opsproof = _status_of(record)  # type: ignore[attr-defined]

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        # pytest raises its own Interrupted (a KeyboardInterrupt) for collection errors and -x.
        if self.state.signalled is None and not isinstance(excinfo.value, pytest.Session.Interrupted):
            self.state.signalled = "SIGINT"

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> Any:
        state = self.state
        if state.gatherer is not None:
            state.gatherer.stop()
        if owns_process(self.config) and not gc.isenabled():
            # Paused during the checks (see plugin.pytest_runtestloop), the collector runs again for the
            # bundle, whose rendering makes cycles (kept, they added ~40 MiB to a 10,000-check run's
            # peak); frozen first, so its passes never walk the checks' objects.
            gc.freeze()
            gc.enable()
        if session.config.option.collectonly:  # nothing was checked: no evidence to seal
            return (yield)
        state.exit_code = _exit_code(state, int(exitstatus))
        if state.exit_code == outcomes.EXIT_USAGE:
            # A usage error (an unknown marker in -m, a check file of no known kind) means the
            # checks did not run: sealing a bundle would add a run to the chain and the history
            # that a period report counts.
            session.exitstatus = state.exit_code
            try:
                return (yield)
            finally:
                _print_last_line(self.config, state)
        signalled = Outcome()
        shown: Results | None = None
        early: EarlyRecording | None = None
        try:
            from opsproof.compliance.shared_chain import fallback_note, head_for
            from opsproof.evidence.bundle import bundle_path, write_bundle
            from opsproof.evidence.premade import Premade
            from opsproof.run.early_recording import EarlyRecording
            from opsproof.run.results import build_results

            # Every writer and signal shows the results redacted: one document serves them all (without
            # a secret it is the same object; with one, the unredacted copy is dropped, not held beside it).
            redactor = state.redactor
            unmade = sum(1 for record in state.records.values() if type(record) is dict)  # left for the end
            premade = Premade()  # the checks' pieces of the bundle's files, made as each ended
            state.results = shown = build_results(self.config, state, self._commit, shown_by=redactor, premade=premade)
            # Before sealing, so every delivery attempt is sealed in the bundle with the rest.
            sent = notify(
                state.loaded.profile.notify,
                shown,
                bundle_path(state.results.run, state.report_dir),
                state.history,
                notify_mode(self.config),
                redactor.redact,
                self._show,
                signalled,
            )
            extra = {NOTIFICATIONS_FILE: sent} if sent is not None else None
            head = head_for(state.report_dir, state.history)
            # Not in an xdist controller: execnet's threads would be forked mid-flight. Nor when most records
            # were made while the checks waited, or few were left: what is left of report.html then takes
            # less than forking does.
            in_child = (
                owns_process(self.config)
                and not self.config.pluginmanager.has_plugin("opsproof-xdist")
                and unmade * UNMADE_FOR_A_CHILD >= len(shown.checks)
                and unmade >= UNMADE_FOR_A_CHILD_AT_LEAST
            )
            if self._early is not None:
                early = self._early  # its store opened while the checks waited; its rows written after ours
            elif in_child and (history := self._early_history()) is not None:
                early = EarlyRecording(history)  # the run's rows while the child renders report.html
            state.bundle = write_bundle(
                shown,
                state.report_dir,
                redactor,
                state.signer,
                extra,
                head=head,
                redacted_already=True,
                in_child=in_child,
                meanwhile=early.begin if early is not None else None,
                premade=premade,
            )
            note = fallback_note(head)
            if note is not None:  # sealed against the local head: the shared chain breaks here, say so (exit 3)
                state.shipping_errors.append(redactor.redact(note))
                state.exit_code = outcomes.EXIT_INTERNAL
        except Exception as exc:  # the evidence is the product: failing to write it is an internal error
            state.bundle_error = f"{type(exc).__name__}: {exc}"
            state.exit_code = outcomes.EXIT_INTERNAL
        try:
            if state.bundle is not None:
                _ship(state, early)
        finally:
            if early is not None:
                early.abandon()  # a no-op once finished; rolled back when the bundle was not sealed
        _signal(self.config, state, shown, signalled)
        session.exitstatus = state.exit_code
        try:
            return (yield)
        finally:
            _print_last_line(self.config, state)
            if owns_process(self.config):
                # pytest's unraisable-exception cleanup runs gc.collect() twice after this;
                # frozen, the run's objects are not traversed again (measured ~0.1 s per
                # 1,000 checks). The process ends right after, so nothing is kept for long.
                gc.freeze()

    def _show(self, text: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(text)
        else:
            print(text)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        from opsproof.model.results import Waiver
        from opsproof.run.terminal import write_summary

        state = self.state
        results = state.results
        # Without a results document (collection only, or it could not be built): the records as they are.
        records = results.checks if results else [_model_of(r) for r in state.records.values()]
        waivers = results.summary.waivers.unmatched if results else None
        unmatched = waivers if waivers is not None else [Waiver.model_validate(w) for w in state.unmatched_waivers]
        write_summary(
            terminalreporter,
            environment=state.loaded.profile.environment,
            fail_on=state.fail_on,
            change=state.change or None,
            records=records,
            unmatched=unmatched,
            shipped=state.shipped,
            unmatched_windows=_unmatched_windows(state),
        )


def _model_of(record: Mapping[str, Any]) -> CheckRecord:
    """A kept record's model (`run.results.Kept`), or a record's dict validated."""
    from opsproof.model.results import CheckRecord
    from opsproof.run.results import Kept

    return record.model if isinstance(record, Kept) else CheckRecord.model_validate(record)


_STATUSES: dict[tuple[str, bool], Mapping[str, Any]] = {}


def _status_of(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """The outcome and whether a maintenance window held it, as one shared read-only mapping per pair."""
    key = (record["outcome"], bool(record.get("maintenance")))
    status = _STATUSES.get(key)
    if status is None:
        status = _STATUSES[key] = MappingProxyType({"outcome": key[0], "maintenance": key[1]})
    return status


def load_bundle_writers() -> None:
    """Import what writes the bundle and compile report.html's template, while the run waits anyway."""
    for module in (
        "evidence.bundle",
        "evidence.premake",
        "run.results",
        "run.terminal",
        "run.early_recording",
        "compliance.shared_chain",  # the chain's head, asked before sealing
        "signals.metrics",  # the run's cadence, asked after it
    ):
        importlib.import_module(f"opsproof.{module}")
    importlib.import_module("opsproof.evidence.html").load_template()


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
    blocking = any(
        outcomes.is_blocking(r["outcome"], r["severity"], state.fail_on, held=bool(r.get("maintenance")))
        for r in state.records.values()
    )
    return outcomes.EXIT_BLOCKING if blocking else outcomes.EXIT_OK


def _unmatched_windows(state: RunState) -> list[Maintenance]:
    totals = state.results.summary.maintenance if state.results is not None else None
    if totals is not None:
        return totals.unmatched
    from opsproof.model.results import Maintenance

    return [Maintenance.model_validate(w) for w in state.unmatched_windows]


def _signal(config: pytest.Config, state: RunState, results: Results | None, signalled: Outcome) -> None:
    """After the bundle: metrics, the CI summary, the end ping. None of them changes the exit status.

    The ping goes out even when no bundle could be written: its monitor must learn of the exit 3.
    """
    from opsproof.signals.metrics import run_cadence

    if results is not None:
        # The history or the upload may have made the exit status 3 since results.json was written.
        exit_code = state.exit_code if state.exit_code is not None else outcomes.EXIT_INTERNAL
        status = outcomes.RUN_STATUS.get(exit_code, "failed")
        results = results.model_copy(
            update={"run": results.run.model_copy(update={"exit_code": exit_code, "status": status})}
        )
        metrics_file = config.getoption("metrics_file")
        export_metrics(
            results,
            run_cadence(config.option.markexpr),
            Path(metrics_file) if metrics_file else None,
            config.getoption("pushgateway"),
            state.loaded.profile.pushgateway,
            state.redactor.redact,
            signalled,
        )
        github_summary(results, state.bundle, signalled)
    ping_url = config.getoption("ping")
    if ping_url is not None:
        from opsproof.signals.ping import ping

        problem = ping(ping_url, str(state.exit_code))
        if problem is not None:
            signalled.problems.append(f"opsproof: the end ping (--ping) failed: {state.redactor.redact(problem)}")
    state.signals_seconds = signalled.seconds
    state.shipped += signalled.notes
    state.shipping_errors += signalled.problems


def _ship(state: RunState, early: EarlyRecording | None = None) -> None:
    assert state.bundle is not None and state.history is not None
    if state.shard is not None:
        # A shard is part of a run, not one: `opsproof seal-run` records the whole run once.
        state.shipped.append(f"opsproof: {state.shard.label} of run {state.run_id}; seal-run joins the shards")
    shipped, errors = ship_bundle(
        state.bundle,
        state.report_dir,
        None if state.shard is not None else state.history,
        state.upload,
        state.redactor,
        early,
    )
    state.shipped.extend(shipped)
    state.shipping_errors.extend(errors)
    if errors:  # only the bundle's own shipping: a failed ping or notification never changes the exit status
        state.exit_code = outcomes.EXIT_INTERNAL


def ship_bundle(
    bundle: Path,
    report_dir: Path,
    history: Location | None,
    upload: Upload | None,
    redactor: Redactor,
    early: EarlyRecording | None = None,
) -> tuple[list[str], list[str]]:
    """After sealing: upload the bundle (when asked), then record the run in the history (when given).

    `early`: the run's rows, written while its report.html rendered (`run.early_recording`),
    finished here with the seal; when it could not begin, the sealed bundle is recorded as usual.

    Returns what was done and what failed, one line each. The bundle is the evidence and
    stays whatever happens here; a failure is an internal error (exit 3) that says how to
    recover, since the history is rebuilt from bundles (and their upload receipts).
    """
    from opsproof.compliance.history import History, HistoryError
    from opsproof.evidence.manifest import manifest_sha256

    shipped: list[str] = []
    errors: list[str] = []
    receipt = None
    if upload is not None:
        from opsproof.compliance.upload import describe_error, describe_receipt, upload_bundle, write_receipt

        try:
            receipt = upload_bundle(bundle, upload.target, upload.retain, upload.lock)
        except Exception as exc:
            reason = describe_error(exc)
            errors.append(f"opsproof: the bundle was NOT uploaded to {upload.target.url} ({reason}); it is intact here")
        else:
            write_receipt(report_dir, bundle.name, receipt)
            shipped.append(describe_receipt(receipt))
    if history is None:
        return shipped, errors
    try:
        if early is not None and early.begun and receipt is None:
            early.finish(manifest_sha256(bundle), bundle)
        else:
            with History(history) as store:
                store.record_bundle(bundle, manifest_sha256(bundle), upload=receipt)
        shipped.append(f"opsproof: recorded in the history {history.shown}")
    except Exception as exc:
        reason = str(exc) if isinstance(exc, HistoryError) else f"{type(exc).__name__}: {exc}"
        errors.append(
            f"opsproof: the run is NOT in the history ({redactor.redact(reason)}); "
            "the bundle is intact: `opsproof history rebuild` recovers it"
        )
    return shipped, errors


def _print_last_line(config: pytest.Config, state: RunState) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    for note in map(state.redactor.redact, state.shipping_errors):
        if reporter is not None:
            reporter.write_line(note, red=True)
        else:
            print(note)
    status = outcomes.RUN_STATUS.get(state.exit_code or 0, "failed")
    if state.bundle is not None:
        line = f"opsproof: {status} (exit {state.exit_code}); evidence bundle: {_shown(state.bundle)}"
    elif state.exit_code == outcomes.EXIT_USAGE:
        line = f"opsproof: {status} (exit {state.exit_code}); no evidence bundle was written: the checks did not run"
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
