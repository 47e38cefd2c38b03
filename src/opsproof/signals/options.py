"""The command-line options of signals, and their checks at the start of a run (a bad one is exit 4)."""

from __future__ import annotations

from pathlib import Path

import pytest


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("opsproof-signals", "opsproof signals: metrics, notifications, pings")
    group.addoption(
        "--metrics-file",
        default=None,
        metavar="PATH",
        help="write the run's Prometheus metrics there (node_exporter textfile collector; atomic)",
    )
    group.addoption(
        "--pushgateway",
        default=None,
        metavar="URL",
        help="push the run's metrics to this Pushgateway (grouped by environment and cadence; auth from the "
        "profile's pushgateway:)",
    )
    group.addoption("--no-notify", action="store_true", default=False, help="send no notification (recorded as off)")
    group.addoption(
        "--dry-run-notify",
        action="store_true",
        default=False,
        help="print the notifications the profile's notify: would send (redacted), send none",
    )
    group.addoption(
        "--ping",
        default=None,
        metavar="URL",
        help="heartbeat: GET URL/start when the run starts and URL/<exit code> at its end (healthchecks.io style)",
    )


def notify_mode(config: pytest.Config) -> str:
    if config.getoption("no_notify"):
        return "disabled"
    return "dry-run" if config.getoption("dry_run_notify") else "send"


def check_options(config: pytest.Config) -> None:
    """Refuse what cannot work before any check runs."""
    if config.getoption("no_notify") and config.getoption("dry_run_notify"):
        raise pytest.UsageError("--no-notify and --dry-run-notify: give one of them")
    for option in ("pushgateway", "ping"):
        url = config.getoption(option)
        if url is not None and not url.startswith(("http://", "https://")):
            raise pytest.UsageError(f"--{option} {url!r}: expected an http:// or https:// URL")
    path = config.getoption("metrics_file")
    if path is not None:
        target = Path(path)
        if target.is_dir() or path.endswith("/"):
            raise pytest.UsageError(
                f"--metrics-file {path!r} is a directory; give a file such as {path.rstrip('/')}/opsproof.prom"
            )
        if target.parent.exists() and not target.parent.is_dir():
            raise pytest.UsageError(f"--metrics-file {path!r}: {str(target.parent)!r} is not a directory")
