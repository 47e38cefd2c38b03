"""opsproof: operational runbooks as scheduled pytest checks with tamper-evident evidence.

The public API is small on purpose: the names below, each documented in docs/custom-checks.md
(tests/core/test_custom_checks.py::test_public_api holds the two together).

A check of your own, in `checks/`::

    import pytest
    from opsproof import Check, Threshold, parse_duration

    @pytest.mark.daily
    @pytest.mark.opsproof(severity="high", controls=["SOC2:CC7.1"], target="orders")
    def test_consumer_lag(check: Check) -> None:
        lag = ...  # measure it, read-only and within a deadline
        check.observe(lag_s=lag)
        check.threshold("consumer lag", lag, Threshold(warn=parse_duration("1m"), fail=parse_duration("5m")))

PYTEST_DONT_REWRITE: opsproof's modules are library code, never assertion-rewritten
(`opsproof.run.not_rewritten`); this marker tells pytest so where they were imported before
it started (`opsproof demo` imports them while its services start: `opsproof.demo.held`).
"""

from __future__ import annotations

import opsproof.run.not_rewritten  # noqa: F401  first: see its docstring
from opsproof.heap import collector_paused

with collector_paused():  # ~60,000 objects made for good: no collection walks them (see opsproof.heap)
    from opsproof.errors import CheckError, CheckFailed, ProfileError
    from opsproof.model.check import Check
    from opsproof.model.fields import Threshold
    from opsproof.profile import Profile, load_profile
    from opsproof.run.scoping import Part, applies, each
    from opsproof.units import format_duration, format_percent, format_size, parse_duration, parse_percent, parse_size
    from opsproof.version import __version__

__all__ = [
    "Check",
    "CheckError",
    "CheckFailed",
    "Part",
    "Profile",
    "ProfileError",
    "Threshold",
    "__version__",
    "applies",
    "each",
    "format_duration",
    "format_percent",
    "format_size",
    "load_profile",
    "parse_duration",
    "parse_percent",
    "parse_size",
]
