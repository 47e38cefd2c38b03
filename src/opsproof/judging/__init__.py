"""Helpers the checks files use to judge facts against a profile's expectations.

- compare.py       a JSON document against an expected subset (`expect.json:`)
- query_expect.py  a SQL query's rows against `expect:` (postgres queries, drills' verify queries)
"""
