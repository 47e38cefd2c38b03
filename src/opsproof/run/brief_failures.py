"""How pytest shows a kind's failed check: its finding, not the frames of the check's code.

The record says what failed (its message, in report.html, results.json and the summary);
pytest's short traceback of the same failure parsed each frame's whole module again, ~3.5 ms a
failed check: an outage of 1,000 endpoints took 4.5 s where the run that passed took 0.9 s
(1.9 s now). A check of one's own keeps pytest's traceback, and so does an exception that is a
bug (not an AssertionError or a CheckError), and any run with `--tb=long`, `--tb=native` or
`--full-trace`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from opsproof.errors import CheckError


def brief_failures(checks: list[pytest.Item]) -> None:
    """Each of these kinds' checks shows pytest the finding alone when it fails."""
    for item in checks:
        if isinstance(item, pytest.Function):
            item.repr_failure = partial(_repr_failure, item, item.repr_failure)  # type: ignore[method-assign]


def _repr_failure(item: pytest.Function, full: Callable[[Any], Any], excinfo: pytest.ExceptionInfo[Any]) -> Any:
    option = item.config.option
    finding = isinstance(excinfo.value, (AssertionError, CheckError))
    if finding and option.tbstyle in ("auto", "short") and not option.fulltrace:
        return item._repr_failure_py(excinfo, style="value")
    return full(excinfo)
