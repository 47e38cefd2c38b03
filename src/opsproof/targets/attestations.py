"""Profile model of `attestations`: manual runbook lines a person attests to (being built)."""

from __future__ import annotations

from opsproof.fields import Item


class AttestationTarget(Item):
    """One manual checklist line."""
