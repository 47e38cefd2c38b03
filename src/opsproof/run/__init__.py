"""The pytest run: the plugin's hooks and everything one run of checks holds.

- plugin.py    hooks only: options, markers, profile loading, parametrization, fixtures (the pytest11 entry point)
- state.py     `RunState`, what one run holds (profile, redactor, records, change, history) and `TargetRef`
- scoping.py   `@applies` and `@each`: which items, and which parts of them, a check runs for
- gather.py    the probes of the selected kinds, run concurrently before and alongside the checks
- custom.py    checks of one's own: the `opsproof` marker (severity, controls, target) and their check ids
- records.py   one pytest report -> one evidence record (outcome, waiver, controls, redaction)
- recorder.py  at the end of the run: the results document, the bundle, the history, the upload
- results.py   the results document (results.json's content) built from the run's state
- terminal.py  the opsproof section of pytest's terminal summary
- shard_bundles.py  the shard bundles of a run (--shard), found, verified and matched with the shards expected
- seal.py      `opsproof seal-run`: a run's shard bundles made into one run bundle, chained and recorded once
- not_rewritten.py  opsproof's own modules imported without pytest's assertion rewriting (imported first)
- quiet.py     the kinds' own check modules run without pytest's output, log and warnings capture (they never print)
"""
