"""Profile model of `drills` items: restore a backup and prove it holds the data (being built)."""

from __future__ import annotations

from pydantic import Field

from opsproof.fields import Item, Name


class DrillTarget(Item):
    """A restore drill of one `backups` item."""

    backup: Name = Field(description="the name of the `backups` item whose backup is restored")
