"""`opsproof seal-run`'s command line: its options, and the run's lines on the terminal (see seal.py)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opsproof import outcomes
from opsproof.compliance import ComplianceError


def add_seal_run_parser(commands: Any) -> None:
    seal = commands.add_parser(
        "seal-run", help="verify every shard bundle of a run and seal them into one run bundle (chain, history)"
    )
    seal.add_argument("source", metavar="DIR|s3://BUCKET/PREFIX", help="where the shards wrote or uploaded bundles")
    seal.add_argument("--run-id", metavar="ID", help="the run to seal (default: $OPSPROOF_RUN_ID, else the one here)")
    seal.add_argument(
        "--shards",
        type=int,
        metavar="N",
        help="how many shards the run has (default: $OPSPROOF_SHARDS, else as the bundles say)",
    )
    seal.add_argument(
        "--wait",
        default="0s",
        metavar="DURATION",
        help="wait up to this long (e.g. 20m) for every shard's bundle before sealing what there is",
    )
    seal.add_argument(
        "--fail-on", default="high", choices=outcomes.FAIL_ON_CHOICES, help="as for pytest, over the whole run"
    )
    seal.add_argument("--sign-key", type=Path, metavar="PATH", help="sign the run bundle's manifest with this key")
    seal.add_argument("--public-key", type=Path, metavar="PATH", help="require each shard bundle signed by this key")
    seal.add_argument("--upload", metavar="s3://BUCKET/PREFIX", help="also put the run bundle in S3")
    seal.add_argument("--retain", metavar="7y|400d", help="with --upload: Object Lock retention")
    seal.add_argument("--s3-endpoint", metavar="URL", help="an S3-compatible endpoint for s3:// paths")
    seal.add_argument(
        "--report-dir", type=Path, default=None, help="where the run bundle goes (default: DIR; reports/ for s3://)"
    )
    seal.add_argument(
        "--history-dsn",
        metavar="DSN",
        help="a PostgreSQL (postgresql://...) or sqlite:///PATH history (default: $OPSPROOF_HISTORY_DSN, "
        "else REPORT_DIR/history.sqlite); a PostgreSQL one holds the chain head too",
    )
    seal.add_argument("--profile", metavar="NAME|PATH", help="the profile the shards ran (default: $OPSPROOF_PROFILE)")
    seal.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="a ${vars.NAME} value")


def seal_run_command(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    from opsproof.compliance.history import HistoryError
    from opsproof.profile import parse_cli_vars
    from opsproof.run.seal import SealRequest, seal_run
    from opsproof.units import parse_duration

    try:
        wait_s = parse_duration(args.wait)
    except ValueError as exc:
        raise ComplianceError(f"--wait {args.wait!r}: {exc}") from None
    shards = args.shards
    if shards is None and os.environ.get("OPSPROOF_SHARDS"):
        try:
            shards = int(os.environ["OPSPROOF_SHARDS"])
        except ValueError:
            raise ComplianceError(f"$OPSPROOF_SHARDS {os.environ['OPSPROOF_SHARDS']!r} is not a whole number") from None
    request = SealRequest(
        source=args.source,
        run_id=args.run_id,
        shards=shards,
        profile=args.profile,
        cli_vars=parse_cli_vars(args.var),
        report_dir=args.report_dir,
        fail_on=args.fail_on,
        history_dsn=args.history_dsn,
        sign_key=args.sign_key,
        public_key=args.public_key,
        upload=args.upload,
        retain=args.retain,
        s3_endpoint=args.s3_endpoint,
        wait_s=wait_s,
        command=list(argv if argv is not None else sys.argv[1:]),
    )
    try:
        sealed = seal_run(request)
    except HistoryError as exc:
        print(f"opsproof seal-run: {exc}", file=sys.stderr)
        return outcomes.EXIT_INTERNAL
    for state in sealed.shards:
        if state.reason is None:
            print(f"  {state.shard.label}: reported ({state.bundle.path.name if state.bundle else ''})")
        else:
            print(f"  {state.shard.label}: DID NOT REPORT: {state.reason}")
    for line in sealed.lines:
        print(line)
    for line in sealed.errors:
        print(line, file=sys.stderr)
    status = outcomes.RUN_STATUS.get(sealed.exit_code, "failed")
    print(f"opsproof: {status} (exit {sealed.exit_code}); run bundle: {sealed.bundle}")
    return sealed.exit_code
