"""Results documents and an HTML well-formedness check, for the tests of report.html and the period report."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

OUTCOMES = ("passed", "warned", "failed", "error", "skipped", "waived")
SEVERITIES = ("critical", "high", "medium", "low")
HOSTILE = "<script>alert(1)</script>"
VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"})


def make_check(i: int, outcome: str, severity: str, **extra: Any) -> dict[str, Any]:
    check: dict[str, Any] = {
        "id": f"checks/health/test_http.py::test_health[svc-{i}]",
        "check": f"http.health[svc-{i:04d}]",
        "kind": "http",
        "target": f"svc-{i}",
        "markers": ["daily", "health"],
        "controls": ["SOC2:CC7.1", "ISO27001:A.8.16"],
        "severity": severity,
        "outcome": outcome,
        "message": f"{outcome.upper()}-MESSAGE-{i}",
        "observed": {"url": f"http://127.0.0.1:18080/svc-{i}/health", "status": 200, "json": {"status": "ok"}},
        "expected": {"status": [200], "latency": {"warn": "100ms", "fail": "500ms"}},
        "started_at": "2026-11-24T10:45:00.200Z",
        "duration_s": 0.0123,
        "phase": "call",
    }
    check.update(extra)
    return check


def make_results(n: int) -> dict[str, Any]:
    """n checks cycling through every outcome and severity, summarised the way results.py does."""
    checks = [make_check(i, OUTCOMES[i % len(OUTCOMES)], SEVERITIES[i % len(SEVERITIES)]) for i in range(n)]
    by_outcome = {o: 0 for o in ("failed", "error", "warned", "waived", "skipped", "passed")}
    by_severity: dict[str, dict[str, int]] = {}
    for c in checks:
        by_outcome[c["outcome"]] += 1
        row = by_severity.setdefault(c["severity"], {})
        row[c["outcome"]] = row.get(c["outcome"], 0) + 1
    return {
        "schema": "opsproof/results/v1",
        "run": {
            "id": "9f1c2b7e4d",
            "environment": "demo",
            "profile": {"path": "/work/main/profiles/demo.yaml", "sha256": "ab12cd34"},
            "started_at": "2026-11-24T10:45:00.123Z",
            "finished_at": "2026-11-24T10:45:02.456Z",
            "selection": {"markers": "daily", "keywords": None, "paths": ["checks"]},
            "suite": {"version": "0.1.0", "commit": None},
            "host": "ops-runner-1",
            "user": "sre",
            "command": "pytest -m daily --profile demo",
            "status": "failed" if by_outcome["failed"] else "passed",
            "exit_code": 1 if by_outcome["failed"] else 0,
            "fail_on": "high",
            "vars": {"DEMO_PORT": "18080"},
        },
        "checks": checks,
        "summary": {
            "total": n,
            "by_outcome": by_outcome,
            "by_severity": by_severity,
            "blocking": [c["check"] for c in checks if c["outcome"] in ("failed", "error")],
            "waivers": {"applied": [], "expired": [], "unmatched": []},
        },
    }


class TagBalance(HTMLParser):
    """Stack check of non-void elements: every close matches the innermost open element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()


def parse(page: str) -> TagBalance:
    parser = TagBalance()
    parser.feed(page)
    parser.close()
    return parser


FACTS_OPEN = '<script type="application/json" id="check-facts">'


def split_scripts(page: str) -> tuple[str, str, str]:
    """report.html as (the markup without its two scripts, the facts' JSON text, the page's own script's code).

    The facts (`<script type="application/json" id="check-facts">`) and the code (`<script>`) are
    the last elements of the body; either is "" when the page has none.
    """
    facts = code = ""
    if FACTS_OPEN in page:
        start = page.index(FACTS_OPEN)
        end = page.index("</script>", start)
        facts = page[start + len(FACTS_OPEN) : end]
        page = page[:start] + page[end + len("</script>") :]
    if "<script>" in page:
        start = page.rindex("<script>")
        end = page.index("</script>", start)
        code = page[start + len("<script>") : end]
        page = page[:start] + page[end + len("</script>") :]
    return page, facts, code
