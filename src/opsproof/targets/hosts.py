"""Profile model of `hosts` items (being built: see the README's check kinds)."""

from __future__ import annotations

from opsproof.fields import Item


class HostTarget(Item):
    """One hosts target."""
