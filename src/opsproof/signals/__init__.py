"""Signals out of a run: Prometheus metrics, notifications, maintenance windows, pings, CI summaries.

Everything here runs after the checks, from the run's records, and none of it changes a
record or the exit status: a delivery that fails is itself recorded (`notifications.json`
in the bundle) and said on the terminal.

- `metrics`      the Prometheus text format: a node_exporter textfile, a Pushgateway push
- `state`        what changed since the previous run of each check (from the history)
- `payloads`     PagerDuty Events API v2, Slack Block Kit, a generic webhook
- `delivery`     POSTs with retries and backoff inside a deadline; every attempt recorded
- `ping`         healthchecks.io-style start/exit pings
- `ci_summary`   the Markdown summary GitHub Actions shows ($GITHUB_STEP_SUMMARY)
- `options`, `after_run`  the command-line options, and the end of a run that uses all of the above

Elsewhere, by layer: the profile keys `notify:`, `maintenance:`, `metrics:` are models in
`opsproof.model.signals`; which window covers a failing record is `opsproof.judging.maintenance`.
"""
