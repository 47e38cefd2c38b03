"""Profile model of `prometheus` items (being built: see the README's check kinds)."""

from __future__ import annotations

from opsproof.fields import Item


class PrometheusTarget(Item):
    """One prometheus target."""
