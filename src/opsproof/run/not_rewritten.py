"""opsproof's own modules are library code: imported without pytest's assertion rewriting.

pytest rewrites the asserts of every module of a distribution that declares a pytest
plugin, as it would a test file's: on each run it parses, rewrites and compiles ~150
modules (~0.25 s of CPU) wherever it cannot keep its cache of rewritten modules, which
is everywhere `PYTHONDONTWRITEBYTECODE` is set (the container image) or site-packages
is read-only. opsproof's modules raise their own messages (`CheckFailed`, `assert x, msg`,
whose message is the same either way); the checks in `checks/`, the suite's conftest.py
files and its tests are test files, and pytest rewrites them as ever.

Imported first by `opsproof/__init__.py`, before any other opsproof module.
"""

from __future__ import annotations

import sys


def _leave_out(package: str) -> None:
    for finder in sys.meta_path:  # pytest's AssertionRewritingHook, when pytest is running
        marked = getattr(finder, "_must_rewrite", None)
        if type(finder).__name__ == "AssertionRewritingHook" and isinstance(marked, set):
            marked.discard(package)
            cache = getattr(finder, "_marked_for_rewrite_cache", None)
            if isinstance(cache, dict):
                cache.clear()


_leave_out(__name__.partition(".")[0])
