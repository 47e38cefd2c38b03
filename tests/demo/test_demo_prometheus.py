"""The demo's Prometheus (Debian's prometheus and promtool): back-filled, it settles before its first scrape."""

from __future__ import annotations

import json
import shutil
import urllib.parse
import urllib.request
from typing import Any

import pytest

from conftest import wait_for
from opsproof.demo import prometheus
from opsproof.demo.prometheus import BACKFILL_S, SCRAPE_INTERVAL_S, serve_exporter, start_demo_prometheus

pytestmark = pytest.mark.skipif(
    prometheus.prometheus_binary() is None or shutil.which("promtool") is None,
    reason="needs Debian's prometheus package (prometheus and promtool): apt-get install prometheus",
)


def _api(url: str, path: str, **params: str) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"{url}/api/v1/{path}{query}", timeout=5) as answer:
        return json.loads(answer.read())["data"]


def _up(url: str) -> dict[tuple[str, str], str]:
    return {
        (s["metric"]["job"], s["metric"]["instance"]): s["value"][1] for s in _api(url, "query", query="up")["result"]
    }


def test_the_backfill_settles_it_and_its_own_scrapes_continue_the_same_series() -> None:
    with start_demo_prometheus(port=0) as started:
        assert started is not None and started.backfilled
        with serve_exporter(started):
            started.settle()
            # Settled on the back-filled minute: a sample every scrape interval, as its scrapes write them.
            history = _api(started.url, "query", query="count_over_time(up[5m])")["result"]
            assert {s["metric"]["job"]: float(s["value"][1]) for s in history} == {
                "scorpius": pytest.approx(BACKFILL_S / SCRAPE_INTERVAL_S + 1, abs=1),
                "reporting": pytest.approx(BACKFILL_S / SCRAPE_INTERVAL_S + 1, abs=1),
            }
            backfilled = _up(started.url)
            assert sorted(backfilled.values()) == ["0", "1"]
            assert backfilled[("scorpius", started.exporter)] == "1"
            firing = {a["labels"]["alertname"] for a in _api(started.url, "alerts")["alerts"] if a["state"] == "firing"}
            assert {"QueueBacklog", "ServiceDown"} <= firing
            kpi = _api(started.url, "query", query="sum(scorpius_queue_depth)")["result"]
            assert kpi[0]["value"][1] == "1240"

            # Its first discovery round, ~5 s after it started: its scrapes carry on the same two series.
            def scraped() -> bool:
                targets = _api(started.url, "targets", state="active")["activeTargets"]
                return {t["labels"]["job"]: t["health"] for t in targets} == {"scorpius": "up", "reporting": "down"}

            wait_for(scraped, "the demo prometheus to scrape its targets", timeout=30)
            wait_for(
                lambda: (
                    float(_api(started.url, "query", query="count(up)")["result"][0]["value"][1]) == 2
                    and min(
                        float(s["value"][1])
                        for s in _api(started.url, "query", query="count_over_time(up[5m])")["result"]
                    )
                    > BACKFILL_S / SCRAPE_INTERVAL_S + 1
                ),
                "its scrapes to add samples to the back-filled series",
                timeout=10,
            )
            assert _up(started.url) == backfilled


def test_without_promtool_it_settles_on_its_first_scrapes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prometheus, "promtool_binary", lambda binary: None)
    with start_demo_prometheus(port=0) as started:
        assert started is not None and not started.backfilled
        assert "scraping runbook 000's KPIs" in started.demo.line
        with serve_exporter(started):
            started.settle()
            # No back-fill: what it holds, its own scrapes wrote (a few, not a minute's worth).
            history = _api(started.url, "query", query="count_over_time(up[5m])")["result"]
            assert {s["metric"]["job"] for s in history} == {"scorpius", "reporting"}
            assert max(float(s["value"][1]) for s in history) < BACKFILL_S / SCRAPE_INTERVAL_S / 2


def test_the_backfill_is_openmetrics_of_the_scraped_series() -> None:
    text = prometheus.backfill_text("127.0.0.1:1", "127.0.0.1:2", now=1_800_000_000.0)
    lines = text.splitlines()
    assert lines[-1] == "# EOF"
    assert lines[0] == "# TYPE up gauge"
    assert 'up{job="reporting",instance="127.0.0.1:2"} 0 1800000000.000' in lines
    assert (
        'scorpius_queue_depth{queue="background_jobs",job="scorpius",instance="127.0.0.1:1"} 1240 1800000000.000'
        in lines
    )
    assert 'node_cpu_utilisation_ratio{job="scorpius",instance="127.0.0.1:1"} 0.42 1799999940.000' in lines
    # Nothing after `now`: prometheus's head refuses samples older than the back-filled block's end.
    assert max(float(line.rsplit(" ", 1)[1]) for line in lines if not line.startswith("#")) == 1_800_000_000.0
