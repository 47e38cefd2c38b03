"""report.html opened in a real browser: headless Chromium loads both pages and shows their key content.

Skipped, with the reason, where Debian's chromium package is not installed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers.browser import CHROMIUM, SKIP_REASON, browser, rendered
from helpers.compliance_data import record, results, write
from test_compliance_report import Quarter, quarter

from conftest import HttpServer, Runner, http_profile
from opsproof.compliance.report_html import render_period_html

__all__ = ["quarter"]  # fixture

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)
_browser, _rendered = browser, rendered


def test_a_bundle_report_in_chromium(runner: Runner, http_server: HttpServer, tmp_path: Path) -> None:
    runner.profile(
        http_profile(
            f"{{name: wallet-guard, url: '{http_server.base}/health'}}",
            f"{{name: reporting, url: '{http_server.base}/status/503', critical: false}}",
            environment="production",
        )
    )
    run = runner.run("-m", "post_deploy", "--change", "CHG-2048")
    page = _rendered(run.bundle / "report.html", tmp_path)
    text = " ".join(page.text)
    assert "production" in text and "passed" in text.lower()
    assert "http.health[reporting]" in text and "HTTP 503 Service Unavailable, expected 200" in text
    assert "Controls" in text and "SOC2:CC7.1" in text and "SOX-ITGC:CM" in text  # the change's controls
    assert "CHG-2048" in text
    # The only scripts: the facts of the collapsed rows (JSON) and the page's own, which draws them.
    assert page.tags.count("script") == 2 and "img" not in page.tags
    shot = tmp_path / "bundle.png"
    done = _browser(run.bundle / "report.html", f"--screenshot={shot}", "--window-size=1280,1600", cwd=tmp_path)
    assert done.returncode == 0 and shot.stat().st_size > 20_000  # a page was painted, not a blank one


def test_a_period_report_in_chromium(quarter: Quarter, tmp_path: Path) -> None:
    report = quarter.model()
    page_file = tmp_path / "period.html"
    page_file.write_text(render_period_html(report))
    page = _rendered(page_file, tmp_path)
    text = " ".join(page.text)
    assert "opsproof period report" in text.lower() and "prod" in text
    assert "Daily status" in text and "svg" in page.tags
    assert page.tags.count("rect") == 92 * (1 + len(report.controls))
    assert re.search(r"Exceptions \(16: 1 open · 3 missed · 6 waived · 6 resolved\)", text), text[:3000]
    assert "OPS-7" in text and "cto" in text
    assert "Evidence bundles (" in text and "review-alerts" in text
    shot = tmp_path / "period.png"
    done = _browser(page_file, f"--screenshot={shot}", "--window-size=1400,2000", cwd=tmp_path)
    assert done.returncode == 0 and shot.stat().st_size > 50_000


def test_a_minimal_bundle_still_renders(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    at = datetime(2026, 7, 1, 6, tzinfo=UTC)
    bundle = write(tmp_path / "r", results("prod", at, [record("http.health[api]", "error", at=at, controls=[])]))
    text = " ".join(_rendered(bundle / "report.html", tmp_path).text)
    assert "No check named a control." in text
