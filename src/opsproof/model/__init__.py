"""The shared model every layer above speaks: what a check holds, profile field types, controls, markers.

- check.py     `Check`, the record-in-progress a check function fills (observed, expected, warnings)
- fields.py    profile field types: durations, sizes, percentages, thresholds, `Item`, `Defaults`
- controls.py  the compliance controls catalogue and a profile's `controls:` overrides
- markers.py   the cadence, area and stage markers of CONTRACT §1
- shards.py    `--shard I/N`, `--zone`, `--run-id`: which items a runner of a sharded run owns
"""
