"""Profile model of `kubernetes` items (being built: see the README's check kinds)."""

from __future__ import annotations

from opsproof.fields import Item


class KubernetesTarget(Item):
    """One kubernetes target."""
