"""The cyclic garbage collector, paused around the phases that build many objects at once.

Loading a profile or collecting its checks makes a few objects per YAML node or per
check, almost none in cycles; each time enough pile up, the collector walks the whole
growing heap. Measured: a 1,000-item profile loads in 0.14 s with it and 0.05 s without,
a 5,000-item one in 1.4 s and 0.3 s; collecting 5,000 checks takes 0.35 s and 0.25 s.
Garbage is freed by reference counting all the same.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic collection inside the block; the collector as it was afterwards."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
