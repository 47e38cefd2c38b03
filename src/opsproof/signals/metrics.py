"""A run's results in the Prometheus text format: a node_exporter textfile, or a Pushgateway push.

Series (every one carries `environment` and `cadence`; see docs/alerting.md):

    opsproof_check_outcome{check,kind,target,severity,outcome}   1 for the record's outcome, 0 for the others
    opsproof_check_blocking{check,kind,target,severity}           1 when the record makes the run exit 1
    opsproof_check_maintenance{check,window}                      1 for a failing check inside a window
    opsproof_check_value{check,kind,target,measure}               each numeric observed fact
    opsproof_run_last_timestamp_seconds                           when the run finished (the dead-man's switch)
    opsproof_run_duration_seconds, opsproof_run_exit_code
    opsproof_run_checks{outcome,severity}                         records by outcome and severity

Labels come from the profile (names, kinds, severities) and never from messages, so the
number of series is bounded by the profile: at most 6 + 2 + MAX_MEASURES per check.
"""

from __future__ import annotations

import base64
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from opsproof import outcomes
from opsproof.model.markers import CADENCE_MARKERS
from opsproof.model.results import Results

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
JOB = "opsproof"
MAX_MEASURES = 16  # per check: a probe that grows a fact list never floods the TSDB

HELP = {
    "opsproof_check_outcome": "1 for the outcome of the check's record in the last run, 0 for the other outcomes",
    "opsproof_check_blocking": "1 when the check's record made the last run exit 1 (failed/error at or over --fail-on)",
    "opsproof_check_maintenance": "1 when the check failed inside this maintenance window (not paged, not blocking)",
    "opsproof_check_value": "a numeric fact the check observed (measure: its name; _seconds, _ratio, _bytes units)",
    "opsproof_run_last_timestamp_seconds": "Unix time the last run of this environment and cadence finished",
    "opsproof_run_duration_seconds": "how long the last run took",
    "opsproof_run_exit_code": "the exit status of the last run (0 passed, 1 blocking findings, 2-5 see the docs)",
    "opsproof_run_checks": "records of the last run by outcome and severity",
}

# Observed facts are named by their unit's suffix; the series use Prometheus' base units.
_UNITS = (("_ms", "_seconds", 0.001), ("_s", "_seconds", 1.0), ("_pct", "_ratio", 0.01), ("_percent", "_ratio", 0.01))


def run_cadence(markexpr: str | None) -> str:
    """The cadence a run stands for: the one cadence marker its -m names, `post_deploy`, else `adhoc`."""
    words = set(re.findall(r"[A-Za-z_]+", markexpr or ""))
    named = [c for c in CADENCE_MARKERS if c in words]
    if len(named) == 1 and f"not {named[0]}" not in (markexpr or ""):
        return named[0]
    return "post_deploy" if "post_deploy" in words and not named else "adhoc"


def measures(observed: Mapping[str, Any]) -> Iterator[tuple[str, float | int]]:
    """The numeric top-level facts of a record, in base units: `latency_s` -> `latency_seconds`."""
    count = 0
    for key, value in observed.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # NaN: no fact
            continue
        name, scale = key, 1.0
        for suffix, unit, factor in _UNITS:
            if key.endswith(suffix):
                name, scale = key[: -len(suffix)] + unit, factor
                break
        if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name):
            continue
        yield name, value if scale == 1.0 else float(value) * scale  # an HTTP status stays 503, not 503.0
        count += 1
        if count >= MAX_MEASURES:
            return


def render(results: Results, cadence: str) -> str:
    """The exposition text of one run (`promtool check metrics` finds nothing in it)."""
    run = results.run
    base = {"environment": run.environment, "cadence": cadence}
    families: dict[str, list[str]] = {name: [] for name in HELP}
    counts: Counter[tuple[str, str]] = Counter()
    # The labels a check's series share are escaped once per check, not once per series:
    # 11,000 series of 1,000 checks render in a third of the time.
    env = _labels(base)
    outcome_lines, blocking_lines = families["opsproof_check_outcome"], families["opsproof_check_blocking"]
    value_lines = families["opsproof_check_value"]
    for record in results.checks:
        severity, outcome = record.severity, record.outcome
        counts[(outcome, severity)] += 1
        shared = f"{env},{_labels({'check': record.check, 'kind': record.kind, 'target': record.target or ''})}"
        rated = f'{shared},severity="{severity}"'
        outcome_lines += [
            f'opsproof_check_outcome{{{rated},outcome="{each}"}} {int(each == outcome)}\n' for each in outcomes.OUTCOMES
        ]
        held = record.maintenance is not None
        blocking = outcomes.is_blocking(outcome, severity, run.fail_on, held=held)
        blocking_lines.append(f"opsproof_check_blocking{{{rated}}} {int(blocking)}\n")
        if record.maintenance is not None:
            labels = {**base, "check": record.check, "window": record.maintenance.name}
            families["opsproof_check_maintenance"].append(_line("opsproof_check_maintenance", labels, 1))
        value_lines += [
            f'opsproof_check_value{{{shared},measure="{measure}"}} {_number(value)}\n'
            for measure, value in measures(record.observed)
        ]
    started, finished = _unix(run.started_at), _unix(run.finished_at)
    if finished is not None:
        families["opsproof_run_last_timestamp_seconds"].append(
            _line("opsproof_run_last_timestamp_seconds", base, finished)
        )
        if started is not None:
            families["opsproof_run_duration_seconds"].append(
                _line("opsproof_run_duration_seconds", base, round(finished - started, 3))
            )
    families["opsproof_run_exit_code"].append(_line("opsproof_run_exit_code", base, run.exit_code))
    for (counted, level), number in sorted(counts.items()):
        families["opsproof_run_checks"].append(
            _line("opsproof_run_checks", {**base, "outcome": counted, "severity": level}, number)
        )
    return "".join(_family(name, lines) for name, lines in families.items() if lines)


def _family(name: str, lines: Iterable[str]) -> str:
    return f"# HELP {name} {HELP[name]}\n# TYPE {name} gauge\n" + "".join(lines)


def _line(name: str, labels: Mapping[str, str], value: float | int | bool) -> str:
    return f"{name}{{{_labels(labels)}}} {_number(value)}\n"


def _labels(labels: Mapping[str, str]) -> str:
    return ",".join(f'{key}="{_escape(str(text))}"' for key, text in labels.items())


def _number(value: float | int | bool) -> str:
    # repr(): the shortest text that reads back as the same float (`:g` would round a timestamp to 6 digits).
    return repr(float(value)) if isinstance(value, float) else str(int(value))


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unix(stamp: Any) -> float | None:
    if not isinstance(stamp, str):
        return None
    try:
        return round(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp(), 3)
    except ValueError:
        return None


def write_textfile(path: Path, text: str) -> None:
    """Write atomically (a temporary file in the same folder, then rename): node_exporter never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def grouping_path(environment: str, cadence: str) -> str:
    """`/metrics/job/opsproof/environment/<env>/cadence/<cadence>`: one group per environment and cadence.

    A PUT replaces only its own group, so a weekly run never erases the daily run's series.
    """
    segments = [("job", JOB), ("environment", environment), ("cadence", cadence)]
    return "/metrics" + "".join(f"/{key}/{_segment(key, value)}" for key, value in segments)


def _segment(key: str, value: str) -> str:
    # Environments are [A-Za-z0-9_.-] (the profile says so): no value ever needs the gateway's @base64 form.
    if re.fullmatch(r"[A-Za-z0-9_.-]+", value):
        return value
    raise ValueError(f"{key} {value!r} cannot be a Pushgateway grouping value")


def push(
    url: str,
    text: str,
    environment: str,
    cadence: str,
    *,
    timeout: float,
    username: str | None = None,
    password: str | None = None,
    bearer_token: str | None = None,
) -> int:
    """PUT the run's series to a Pushgateway; returns its HTTP status, raises OSError/HTTPError otherwise."""
    import urllib.request  # here: every run reads `run_cadence`, few push (urllib's HTTP client: ~8 ms to import)

    target = url.rstrip("/") + grouping_path(environment, cadence)
    request = urllib.request.Request(target, data=text.encode(), method="PUT")
    request.add_header("Content-Type", CONTENT_TYPE)
    if bearer_token is not None:
        request.add_header("Authorization", f"Bearer {bearer_token}")
    elif username is not None and password is not None:
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return int(answer.status)


__all__ = ["grouping_path", "measures", "push", "render", "run_cadence", "write_textfile"]
