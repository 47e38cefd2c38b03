"""The `opsproof` command: demo, verify, seal-run, schema, keygen, attest, history, report.

Usage errors exit 4, as everywhere in opsproof (argparse's own default is 2).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

from opsproof import outcomes
from opsproof.compliance import ComplianceError
from opsproof.errors import ProfileError
from opsproof.run.seal_command import add_seal_run_parser, seal_run_command
from opsproof.version import __version__

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from opsproof.compliance.history import Location
    from opsproof.compliance.witness import Witness
    from opsproof.evidence.chain_head import ChainHead


EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(outcomes.EXIT_USAGE, f"{self.prog}: error: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _command(argv)
    except BrokenPipeError:
        # The reader left (`opsproof schema | head`): the rest of the output is not wanted, and no
        # traceback either. stdout goes to /dev/null so the interpreter's last flush does not fail
        # again; the status is a shell's for a process its pipe's SIGPIPE ended (128 + 13).
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _command(argv: Sequence[str] | None) -> int:
    parser = _Parser(prog="opsproof", description="Operational runbooks as evidenced pytest checks.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = commands.add_parser("demo", help="start the demo environment and run the daily checks against it")
    demo.add_argument("--serve", action="store_true", help="keep the demo services running until Ctrl-C")
    demo.add_argument("--port", type=int, default=18080, help="preferred loopback port (default 18080)")
    demo.add_argument(
        "--timeline", action="store_true", help="print when each service was ready, pytest started, the bundle sealed"
    )
    demo.add_argument("pytest_args", nargs=argparse.REMAINDER, help="more pytest arguments, after --")

    verify = commands.add_parser(
        "verify", help="check an evidence bundle against its manifest, or every bundle's link in the hash chain"
    )
    verify.add_argument(
        "bundle", nargs="?", help="a bundle or period report folder, or s3://bucket/prefix/<bundle> of an uploaded one"
    )
    verify.add_argument(
        "--chain",
        metavar="DIR",
        action="append",
        help="walk every bundle of each environment under DIR (a report dir, or s3://bucket/prefix of uploads); "
        "repeat it for the report dirs of many runners sharing one chain",
    )
    verify.add_argument("--environment", metavar="ENV", help="with --chain: only this environment's chain")
    verify.add_argument(
        "--public-key", metavar="PATH", type=Path, help="require every manifest to be signed by this Ed25519 key"
    )
    verify.add_argument("--s3-endpoint", metavar="URL", help="for s3:// paths: an S3-compatible endpoint")
    verify.add_argument(
        "--history-dsn",
        metavar="DSN",
        help="with --chain: a history that witnesses which bundles were sealed (default: the folder's "
        "history.sqlite, when there is one); a PostgreSQL one also holds the chain head many runners share",
    )
    verify.add_argument(
        "--witness",
        action="append",
        default=[],
        metavar="s3://BUCKET/PREFIX",
        help="with --chain: uploads that witness which bundles were sealed (repeatable)",
    )

    attest = commands.add_parser(
        "attest", help="record that a manual checklist line (a profile `attestations` item) was done"
    )
    attest.add_argument("id", help="the attestation's id in the profile")
    attest.add_argument("--by", required=True, metavar="NAME", help="who attests (one of the item's attesters)")
    attest.add_argument("--note", required=True, metavar="TEXT", help="what was done, as evidence")
    attest.add_argument("--evidence", type=Path, metavar="FILE", help="a file kept with it (stored by its sha256)")
    attest.add_argument(
        "--change", metavar="TICKET", help="for a change checklist line (cadence: change): the change it was done for"
    )
    _store_options(attest, profile=True)

    history = commands.add_parser("history", help="the history store of runs and attestations")
    history_commands = history.add_subparsers(dest="history_command", required=True, parser_class=_Parser)
    rebuild = history_commands.add_parser(
        "rebuild", help="recreate every run and record from the bundles under the report dir"
    )
    _store_options(rebuild)
    check = history_commands.add_parser(
        "verify", help="prove the attestation chain unbroken and every recorded run's manifest hash unchanged"
    )
    _store_options(check)

    report = commands.add_parser(
        "report", help="a period report from the history: per control, expected against actual runs, exceptions"
    )
    report.add_argument("--environment", required=True, metavar="ENV", help="the environment (as in its profile)")
    report.add_argument("--from", dest="first", metavar="YYYY-MM-DD", help="first day of the period (UTC)")
    report.add_argument("--to", dest="last", metavar="YYYY-MM-DD", help="last day of the period (UTC, inclusive)")
    report.add_argument(
        "--period",
        choices=("weekly", "monthly", "quarterly", "yearly"),
        help="instead of --from/--to: the last complete week, month, quarter or year",
    )
    report.add_argument(
        "--framework",
        "--type",
        dest="frameworks",
        action="append",
        default=[],
        metavar="NAME",
        help="only this framework's controls: sox, soc2, iso27001 (repeatable)",
    )
    report.add_argument(
        "--control", dest="controls", action="append", default=[], metavar="ID", help="only this control (repeatable)"
    )
    report.add_argument(
        "--out", type=Path, metavar="DIR", help="where to write (default REPORT_DIR/period-reports/...)"
    )
    report.add_argument(
        "--sign-key", type=Path, metavar="PEM", help="sign the report's manifest.json with this key (opsproof keygen)"
    )
    _store_options(
        report,
        profile=True,
        profile_help="also expect this profile's attestations (even those never attested) and judge attesters by it",
    )

    add_seal_run_parser(commands)

    keygen = commands.add_parser("keygen", help="make an Ed25519 key pair for signing manifests (--sign-key)")
    keygen.add_argument("path", type=Path, help="writes PATH.pem (private, mode 0600) and PATH.pub (public)")

    schema = commands.add_parser("schema", help="print the JSON Schema of profiles (for editors)")
    schema.add_argument(
        "--results", action="store_true", help="print the JSON Schema of results.json (an evidence bundle's results)"
    )

    args = parser.parse_args(argv)
    try:
        if args.command == "verify":
            return _verify(args)
        if args.command == "keygen":
            return _keygen(args.path)
        if args.command == "attest":
            return _attest(args)
        if args.command == "history":
            return _rebuild(args) if args.history_command == "rebuild" else _history_verify(args)
        if args.command == "report":
            return _report(args)
        if args.command == "seal-run":
            return seal_run_command(args, argv)
    except (ComplianceError, ProfileError) as exc:  # ProfileError: a bad --var
        print(f"opsproof {args.command}: {exc}", file=sys.stderr)
        return outcomes.EXIT_USAGE
    if args.command == "schema":
        from opsproof.model.results import results_json_schema
        from opsproof.profile import profile_json_schema

        print(json.dumps(results_json_schema() if args.results else profile_json_schema(), indent=2))
        return 0
    code = _demo(args.port, args.serve, [a for a in args.pytest_args if a != "--"], args.timeline)
    if argv is None:  # the `opsproof` program, not a call from Python: every service has stopped
        from opsproof.demo.held import exit_now

        exit_now(code)
    return code


def _verify(args: argparse.Namespace) -> int:
    from opsproof.evidence.signing import load_public_key

    if (args.bundle is None) == (args.chain is None):
        raise ComplianceError("give one bundle, or --chain DIR")
    if (args.environment or args.witness or args.history_dsn) and not args.chain:
        raise ComplianceError("--environment, --history-dsn and --witness go with --chain DIR")
    public_key = load_public_key(args.public_key) if args.public_key is not None else None
    if args.chain is not None:
        head = _shared_head(args.history_dsn)
        remote = [url for url in args.chain if url.startswith("s3://")]
        if remote and len(args.chain) > 1:
            raise ComplianceError("--chain s3://...: give one prefix (the runners upload to it)")
        if remote:
            return _verify_s3(
                remote[0], args.s3_endpoint, public_key, chain=True, environment=args.environment, head=head
            )
        return _verify_chain([Path(d) for d in args.chain], args.environment, public_key, _witnesses(args), head)
    if args.bundle.startswith("s3://"):
        return _verify_s3(args.bundle, args.s3_endpoint, public_key, chain=False, environment=None)
    return _verify_bundle(Path(args.bundle), public_key)


def _verify_s3(
    url: str,
    endpoint: str | None,
    public_key: Ed25519PublicKey | None,
    *,
    chain: bool,
    environment: str | None,
    head: ChainHead | None = None,
) -> int:
    """Download what was uploaded (each object's first version) and verify it as a local copy.

    Versions and delete markers added after the upload are findings too: they would hide
    the locked evidence from anyone who reads the latest.
    """
    from opsproof.compliance.upload import fetch

    folder, objects, holder = fetch(url, endpoint, bundle=not chain)
    try:
        base = url.rstrip("/")
        added = [(found["path"], problem) for found in objects for problem in found["problems"]]
        for path, problem in added:
            print(f"TAMPERED {base}/{path}: {problem}")
        if chain:
            code = _verify_chain([folder], environment, public_key, [], head)
            return 1 if added else code
        code = _verify_bundle(folder, public_key, shown=url)
        locked = [o for o in objects if o["lock_mode"]]
        print(
            f"  read {len(objects)} objects"
            + (
                f", {len(locked)} under Object Lock {locked[0]['lock_mode']} until {locked[0]['retain_until']}"
                if locked
                else ", none under Object Lock"
            )
        )
        for found in sorted(objects, key=lambda o: str(o["path"])):
            print(f"  {found['path']}: version {found['version_id'] or '(unversioned)'}, as uploaded")
        return 1 if added else code
    finally:
        holder.cleanup()


def _verify_bundle(bundle: Path, public_key: Ed25519PublicKey | None, shown: str | None = None) -> int:
    from opsproof.evidence.verify import BundleError, signed_by, verify_bundle

    try:
        problems = verify_bundle(bundle, public_key)
    except BundleError as exc:
        print(f"opsproof verify: {exc}", file=sys.stderr)
        return outcomes.EXIT_USAGE
    name = shown or str(bundle)
    if problems:
        for problem in problems:
            print(f"TAMPERED {name}: {problem}")
        return 1
    key = signed_by(bundle)
    signed = ""
    if key:
        signed = f"; signed by key {key[:16]}" + (
            "" if public_key is not None else " (not checked against a trusted key)"
        )
    print(f"OK {name}: every file matches manifest.json{signed}")
    return 0


def _witnesses(args: argparse.Namespace) -> list[Witness]:
    """The witnesses `verify --chain DIR` holds the folder against; ComplianceError when one cannot be read."""
    from opsproof.compliance.history import HistoryError, locate
    from opsproof.compliance.upload import describe_error
    from opsproof.compliance.witness import history_witness, s3_witness

    found = []
    folder = Path(args.chain[0])  # the first report dir's history.sqlite, when no --history-dsn
    location = locate(folder, args.history_dsn)
    if args.history_dsn or Path(location.target).is_file():
        try:
            found.append(history_witness(location))
        except HistoryError as exc:
            raise ComplianceError(f"--history-dsn: {exc}") from None
    for url in args.witness:
        try:
            found.append(s3_witness(url, args.s3_endpoint))
        except ComplianceError:
            raise
        except Exception as exc:
            raise ComplianceError(f"--witness {url}: cannot list it: {describe_error(exc)}") from None
    return found


def _shared_head(dsn: str | None) -> ChainHead | None:
    """The PostgreSQL chain head (--history-dsn, else $OPSPROOF_HISTORY_DSN when it is PostgreSQL)."""
    from opsproof.compliance.history import DSN_VARIABLE, locate
    from opsproof.compliance.shared_chain import PostgresHead

    location = locate(Path("reports"), dsn or os.environ.get(DSN_VARIABLE))
    return PostgresHead(location) if location.kind == "postgres" else None


def _verify_chain(
    report_dirs: list[Path],
    environment: str | None,
    public_key: Ed25519PublicKey | None,
    witnesses: list[Witness],
    head: ChainHead | None = None,
) -> int:
    from opsproof.compliance.history import HistoryError
    from opsproof.evidence.chain import find_environments, find_unsealed, verify_chain

    environments: dict[str, list[Path]] = {}
    unsealed: dict[str, list[Path]] = {}
    for report_dir in report_dirs:
        if not report_dir.is_dir():
            raise ComplianceError(f"--chain {str(report_dir)!r}: not a folder")
        for name, bundles in find_environments(report_dir).items():
            environments.setdefault(name, []).extend(bundles)
        for name, bundles in find_unsealed(report_dir).items():
            unsealed.setdefault(name, []).extend(bundles)
    shown = ", ".join(map(str, report_dirs))
    known = set(environments) | set(unsealed) | {e for w in witnesses for e in w.bundles}
    if environment is not None:
        if environment not in known:
            listed = ", ".join(sorted(known)) or "none"
            raise ComplianceError(f"--environment {environment!r}: no bundles of it in {shown} (found: {listed})")
        known = {environment}
    if not known:
        raise ComplianceError(f"--chain {shown!r}: no evidence bundles in it")
    broken = False
    for name in sorted(known):
        bundles = environments.get(name, [])
        try:
            report = verify_chain(report_dirs[0], bundles, name, public_key, head)
        except HistoryError as exc:
            raise ComplianceError(str(exc)) from None
        chain = {link.bundle for link in report.links}
        findings = [
            f"{p.name}: no manifest.json: a bundle never sealed (a run died writing it, or a full disk), "
            "or whose manifest was removed"
            for p in unsealed.get(name, [])
        ]
        findings += [problem for witness in witnesses for problem in witness.missing(name, chain)]
        count = f"{len(report.links)} bundle{'s' if len(report.links) != 1 else ''}"
        first = report.first_break
        if first is None and not findings:
            ends = f"{report.links[0].bundle} .. {report.links[-1].bundle}"
            print(f"OK chain {name} ({count}, {ends}): every link and every file verified")
            continue
        broken = True
        problems = report.problems + findings
        where = f"first broken link at {first[0]}: {first[1]}" if first is not None else problems[0]
        print(f"BROKEN chain {name} ({count}): {where}")
        for problem in problems[1:] if first is None else [*report.problems[1:], *findings]:
            print(f"  also: {problem}")
    if witnesses:
        print(f"  witnesses: {'; '.join(w.name for w in witnesses)}")
    else:
        print(
            "  no witness: the newest bundles could have been removed without a trace in this folder; "
            "give --history-dsn (a history on another host) or --witness s3://... (uploads under Object Lock)"
        )
    return 1 if broken else 0


def _store_options(parser: argparse.ArgumentParser, *, profile: bool = False, profile_help: str | None = None) -> None:
    parser.add_argument("--report-dir", type=Path, default=Path("reports"), help="where bundles are (default reports/)")
    parser.add_argument(
        "--history-dsn",
        metavar="DSN",
        help="a PostgreSQL (postgresql://...) or sqlite:///PATH history "
        "(default: $OPSPROOF_HISTORY_DSN, else REPORT_DIR/history.sqlite)",
    )
    if profile:
        parser.add_argument(
            "--profile",
            metavar="NAME|PATH",
            help="profiles/NAME.yaml or a path (default: $OPSPROOF_PROFILE, else demo)",
        )
        parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="a ${vars.NAME} value")


def _location(args: argparse.Namespace) -> Location:
    from opsproof.compliance.history import DSN_VARIABLE, locate

    return locate(args.report_dir.absolute(), args.history_dsn or os.environ.get(DSN_VARIABLE))


def _attest(args: argparse.Namespace) -> int:
    from opsproof.compliance.attestations import check_input, record_attestation
    from opsproof.compliance.declared import load_declared
    from opsproof.compliance.history import History, HistoryError
    from opsproof.compliance.periods import parse_utc, period_of
    from opsproof.profile import parse_cli_vars

    declared = load_declared(args.profile, parse_cli_vars(args.var))
    item = declared.attestation(args.id)
    check_input(item, by=args.by, note=args.note, evidence=args.evidence)  # before touching the store
    if args.change is not None:
        from opsproof.compliance.change import change_context

        change_context(ticket=args.change, environ={})  # a malformed ticket is a usage error naming --change
    location = _location(args)
    try:
        with History(location) as history:
            entry = record_attestation(
                history,
                declared.environment,
                item,
                by=args.by,
                note=args.note,
                evidence=args.evidence,
                change=args.change,
            )
    except HistoryError as exc:
        print(f"opsproof attest: not recorded: {exc}", file=sys.stderr)
        return outcomes.EXIT_INTERNAL
    at = parse_utc(entry["attested_at"])
    label = f"change {args.change}" if item.cadence == "change" else period_of(item.cadence, at.date()).label
    print(
        f"opsproof attest: {item.name} ({item.title}) attested by {entry['attested_by']} "
        f"at {entry['attested_at']} for {label} ({item.cadence}), environment {declared.environment}"
    )
    if entry["evidence_sha256"]:
        print(
            f"  evidence {entry['evidence_name']}: {entry['evidence_bytes']} bytes, sha256 {entry['evidence_sha256']}"
        )
    print(f"  entry sha256 {entry['entry_sha256']} in {location.shown}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from opsproof.compliance.audit import audit_history
    from opsproof.compliance.declared import load_declared
    from opsproof.compliance.history import History, HistoryError
    from opsproof.compliance.period import ReportRequest, build_report, check_period, last_complete, parse_day
    from opsproof.compliance.report_csv import render_csv
    from opsproof.compliance.report_html import render_period_html
    from opsproof.compliance.report_json import render_json
    from opsproof.evidence.manifest import seal_report
    from opsproof.evidence.signing import load_signer
    from opsproof.profile import parse_cli_vars

    now = datetime.now(UTC)
    if args.period is not None:
        if args.first or args.last:
            raise ComplianceError("--period replaces --from/--to: give one or the other")
        first, last = last_complete(args.period, now.date())
    elif args.first and args.last:
        first, last = parse_day(args.first, "--from"), parse_day(args.last, "--to")
    else:
        raise ComplianceError("give --from YYYY-MM-DD and --to YYYY-MM-DD, or --period monthly (or weekly, ...)")
    check_period(first, last)
    declared = None
    if args.profile is not None:  # only when asked: the report stands on the history alone
        declared = load_declared(args.profile, parse_cli_vars(args.var))
        if declared.environment != args.environment:
            raise ComplianceError(
                f"--profile {declared.path} is the profile of environment {declared.environment!r}, "
                f"not {args.environment!r}"
            )
    signer = load_signer(args.sign_key) if args.sign_key is not None else None
    suffix = "-" + "-".join(f.lower() for f in args.frameworks) if args.frameworks else ""
    out = args.out or args.report_dir / "period-reports" / f"{args.environment}-{first}-to-{last}{suffix}"
    request = ReportRequest(args.environment, first, last, tuple(args.frameworks), tuple(args.controls), now)
    location = _location(args)
    if location.kind == "sqlite" and not Path(location.target).exists():
        raise ComplianceError(
            f"no history at {location.shown}: no run was recorded there (--report-dir, --history-dsn)"
        )
    try:
        with History(location) as history:
            audit = audit_history(
                history,
                args.report_dir,
                environment=args.environment,
                start=f"{first}T00:00:00.000Z",
                end=f"{last + timedelta(days=1)}T00:00:00.000Z",
            )
            report = None if audit.problems else build_report(history, request, declared)
    except HistoryError as exc:
        print(f"opsproof report: {exc}", file=sys.stderr)
        return outcomes.EXIT_INTERNAL
    if audit.problems:
        # A report is sealed evidence: built from rows its bundles do not support, it would
        # certify what no run found.
        for problem in audit.problems:
            print(f"BROKEN {problem}")
        print(
            f"opsproof report: the history {location.shown} disagrees with the bundles in {args.report_dir} "
            f"({len(audit.problems)} finding(s)); no report was written. `opsproof history verify` lists them; "
            "`opsproof history rebuild` recreates the history from the bundles",
            file=sys.stderr,
        )
        return 1
    assert report is not None
    _clear_report_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"report.html": render_period_html(report), "report.json": render_json(report), **render_csv(report)}
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
    document = report.dump()
    about = {key: document[key] for key in ("environment", "period", "frameworks", "generated_at", "history")}
    seal_report(out, about | {"controls_requested": report.controls_requested, "version": __version__}, signer)
    summary = report.summary
    exceptions = summary.exceptions
    rate = "—" if summary.pass_rate is None else f"{summary.pass_rate * 100:.1f}%"
    print(
        f"opsproof report: {args.environment} {first} to {last}: {summary.runs} runs, "
        f"{summary.controls} controls, "
        f"pass rate {rate}; exceptions: {exceptions.open} open, {exceptions.missed} missed runs, "
        f"{exceptions.waived} waived, {exceptions.resolved} resolved"
        + (f", {exceptions.maintenance} in maintenance windows" if exceptions.maintenance else "")
    )
    print(f"  {out / 'report.html'} (and report.json, {', '.join(n for n in files if n.endswith('.csv'))})")
    signed = f", signed by key {signer.key_id[:16]}" if signer is not None else ""
    print(f"  sealed in {out / 'manifest.json'}{signed}: `opsproof verify {out}` proves it unchanged")
    return 0


def _clear_report_folder(out: Path) -> None:
    """Make `out` ready for a new report: an earlier report's files go; anyone else's files stop it."""
    from opsproof.compliance.report_csv import CSV_FILES
    from opsproof.evidence.manifest import MANIFEST, SIGNATURE

    if not out.exists():
        return
    report_files = ("report.html", "report.json", *CSV_FILES, MANIFEST, SIGNATURE)
    if not out.is_dir():
        raise ComplianceError(f"--out {str(out)!r} exists and is not a folder")
    strangers = sorted(p.name for p in out.iterdir() if p.name not in report_files)
    if strangers:
        raise ComplianceError(
            f"--out {str(out)!r} holds files an opsproof report did not write ({', '.join(strangers[:5])}); "
            "give an empty or new folder"
        )
    for name in report_files:
        (out / name).unlink(missing_ok=True)


def _history_verify(args: argparse.Namespace) -> int:
    from opsproof.compliance.attestations import chain_problems, entries, evidence_problem
    from opsproof.compliance.audit import audit_history
    from opsproof.compliance.history import History, HistoryError

    location = _location(args)
    if location.kind == "sqlite" and not Path(location.target).exists():
        raise ComplianceError(f"no history at {location.shown}")
    problems: list[str] = []
    try:
        with History(location) as history:
            environments = history.environments()
            attested = 0
            for environment in environments:
                found = entries(history, environment)
                attested += len(found)
                problems += [f"attestations of {environment}: {p}" for p in chain_problems(history, environment)]
                for entry in found:
                    problem = evidence_problem(history, entry)
                    if problem:
                        problems.append(f"attestation {entry['seq']} ({entry['attestation_id']}): {problem}")
            audit = audit_history(history, args.report_dir)
    except HistoryError as exc:
        print(f"opsproof history verify: {exc}", file=sys.stderr)
        return outcomes.EXIT_INTERNAL
    problems += audit.problems
    for problem in problems:
        print(f"BROKEN {problem}")
    print(
        f"{'BROKEN' if problems else 'OK'} history {location.shown}: {attested} attestations in "
        f"{len(environments)} environment(s), {audit.runs} runs ({audit.checked} of their bundles in "
        f"{args.report_dir} checked, every row held against its bundle)"
    )
    return 1 if problems else 0


def _rebuild(args: argparse.Namespace) -> int:
    from opsproof.compliance.history import History, HistoryError
    from opsproof.compliance.rebuild import rebuild

    if not args.report_dir.is_dir():
        raise ComplianceError(f"--report-dir {str(args.report_dir)!r}: not a folder")
    location = _location(args)
    try:
        with History(location) as history:
            report = rebuild(history, args.report_dir)
    except HistoryError as exc:
        print(f"opsproof history rebuild: {exc}", file=sys.stderr)
        return outcomes.EXIT_INTERNAL
    print(
        f"opsproof history rebuild: {report.runs} runs, {report.records} records from {args.report_dir} "
        f"into {location.shown}"
        + (f"; {report.attestations_restored} attestations restored" if report.attestations_restored else "")
    )
    for skipped in report.skipped:
        print(f"  left out (fails verification): {skipped}")
    return 1 if report.skipped else 0


def _keygen(path: Path) -> int:
    from opsproof.evidence.signing import generate_key

    private, public, key = generate_key(path)
    print(f"opsproof keygen: wrote {private} (private: keep it secret) and {public}; key id {key[:16]}")
    print(f"  sign:   pytest -m daily --sign-key {private}")
    print(f"  verify: opsproof verify BUNDLE --public-key {public}")
    return 0


def repository_root() -> Path | None:
    """The folder holding checks/ and profiles/: the current one, or this checkout's."""
    for candidate in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (candidate / "checks").is_dir() and (candidate / "profiles" / "demo.yaml").is_file():
            return candidate
    return None


def _demo(port: int, serve: bool, pytest_args: list[str], timeline: bool = False) -> int:
    root = repository_root()
    if root is None:
        print(
            "opsproof demo: run it from the opsproof repository root (checks/ and profiles/demo.yaml)", file=sys.stderr
        )
        return outcomes.EXIT_USAGE
    # SIGTERM (systemd, `timeout`, docker stop) and SIGHUP (a closed terminal) stop the demo as Ctrl-C
    # does: by unwinding, so every service is stopped and every temporary folder removed on the way out.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    from opsproof.demo.run import run_demo
    from opsproof.demo.startup import DemoUsageError, Timeline

    clock = Timeline()
    clock.mark_process_start("the opsproof process started (then Python's start-up and opsproof's imports)")
    try:
        return run_demo(root, port, serve, pytest_args, clock)
    except DemoUsageError as exc:
        print(f"opsproof demo: {exc}", file=sys.stderr)
        return outcomes.EXIT_USAGE
    except (RuntimeError, OSError) as exc:  # a service that did not start: every other one was stopped
        print(f"opsproof demo: a demo service did not start, every other one was stopped: {exc}", file=sys.stderr)
        return outcomes.EXIT_INTERNAL
    except KeyboardInterrupt:
        print("opsproof demo: stopped; every service was stopped", file=sys.stderr)
        return outcomes.EXIT_OK if serve else outcomes.EXIT_INTERRUPTED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if timeline:
            print("opsproof demo: timeline (seconds since the demo began)", *clock.lines(), sep="\n  ", file=sys.stderr)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


if __name__ == "__main__":
    sys.exit(main())
