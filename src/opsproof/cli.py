"""The `opsproof` command: demo, verify, schema.

Usage errors exit 4, as everywhere in opsproof (argparse's own default is 2).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from opsproof import outcomes


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(outcomes.EXIT_USAGE, f"{self.prog}: error: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="opsproof", description="Operational runbooks as evidenced pytest checks.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = commands.add_parser("demo", help="start the demo environment and run the daily checks against it")
    demo.add_argument("--serve", action="store_true", help="keep the demo services running until Ctrl-C")
    demo.add_argument("--port", type=int, default=18080, help="preferred loopback port (default 18080)")
    demo.add_argument("pytest_args", nargs=argparse.REMAINDER, help="more pytest arguments, after --")

    verify = commands.add_parser("verify", help="check an evidence bundle against its manifest")
    verify.add_argument("bundle", type=Path)

    commands.add_parser("schema", help="print the JSON Schema of profiles (for editors)")

    args = parser.parse_args(argv)
    if args.command == "verify":
        return _verify(args.bundle)
    if args.command == "schema":
        from opsproof.profile import profile_json_schema

        print(json.dumps(profile_json_schema(), indent=2))
        return 0
    return _demo(args.port, args.serve, [a for a in args.pytest_args if a != "--"])


def _verify(bundle: Path) -> int:
    from opsproof.evidence.verify import BundleError, verify_bundle

    try:
        problems = verify_bundle(bundle)
    except BundleError as exc:
        print(f"opsproof verify: {exc}", file=sys.stderr)
        return outcomes.EXIT_USAGE
    if problems:
        for problem in problems:
            print(f"TAMPERED {bundle}: {problem}")
        return 1
    print(f"OK {bundle}: every file matches manifest.json")
    return 0


def repository_root() -> Path | None:
    """The folder holding checks/ and profiles/: the current one, or this checkout's."""
    for candidate in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (candidate / "checks").is_dir() and (candidate / "profiles" / "demo.yaml").is_file():
            return candidate
    return None


def _demo(port: int, serve: bool, pytest_args: list[str]) -> int:
    from opsproof.demo.environment import demo_environment

    root = repository_root()
    if root is None:
        print(
            "opsproof demo: run it from the opsproof repository root (checks/ and profiles/demo.yaml)", file=sys.stderr
        )
        return outcomes.EXIT_USAGE
    with demo_environment(port) as demo:
        command = [sys.executable, "-m", "pytest", "-m", "daily", "--profile", "demo", *demo.var_args(), *pytest_args]
        for line in demo.services:
            print(f"opsproof demo: {line}")
        if serve:
            exports = " ".join(f"{name}={shlex.quote(value)}" for name, value in demo.environ.items())
            print(
                "opsproof demo: serving until Ctrl-C; in another shell, from this folder, run:\n  "
                + f"{exports} {shlex.join(command[2:])}".strip()
            )
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                return 0
        print("opsproof demo: running " + shlex.join(command[2:]), flush=True)
        started = time.time()
        environ = {**os.environ, **demo.environ}
        code = subprocess.run(command, cwd=root, check=False, env=environ).returncode
    report = _newest_report(_report_dir(root, pytest_args), since=started)
    if report is not None:
        print(f"opsproof demo: open {report} in a browser (exit {code})")
    return code


def _report_dir(root: Path, pytest_args: list[str]) -> Path:
    for index, arg in enumerate(pytest_args):
        if arg == "--report-dir" and index + 1 < len(pytest_args):
            return Path(pytest_args[index + 1])
        if arg.startswith("--report-dir="):
            return Path(arg.split("=", 1)[1])
    return root / "reports"


def _newest_report(report_dir: Path, since: float) -> Path | None:
    reports = [p for p in report_dir.glob("demo-*/report.html") if p.stat().st_mtime >= since - 1]
    return max(reports, key=lambda p: p.stat().st_mtime) if reports else None


if __name__ == "__main__":
    sys.exit(main())
