"""Signals out of a run: Prometheus metrics, notifications, maintenance windows, pings, CI summaries.

Everything here runs after the checks, from the run's records, and none of it changes a
record or the exit status: a delivery that fails is itself recorded (`notifications.json`
in the bundle) and said on the terminal.

- `settings`     the profile's `notify:`, `maintenance:` and `metrics:` keys
- `maintenance`  which window covers a failing check, and which windows matched nothing
- `metrics`      the Prometheus text format: a node_exporter textfile, a Pushgateway push
- `state`        what changed since the previous run of each check (from the history)
- `payloads`     PagerDuty Events API v2, Slack Block Kit, a generic webhook
- `delivery`     POSTs with retries and backoff inside a deadline; every attempt recorded
- `ping`         healthchecks.io-style start/exit pings
- `ci_summary`   the Markdown summary GitHub Actions shows ($GITHUB_STEP_SUMMARY)
"""
