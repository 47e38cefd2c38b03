"""Which compliance controls each kind of check gives evidence for.

A starting catalogue; records carry these ids so reports can roll results up by
control. Keys are `kind.aspect` or `kind`; the most specific wins.
"""

from __future__ import annotations

CATALOGUE: dict[str, tuple[str, ...]] = {
    # Availability monitoring of service health: SOC 2 monitoring and availability,
    # ISO 27001 monitoring activities, SOX ITGC computer operations.
    "http": ("SOC2:CC7.1", "SOC2:A1.1", "ISO27001:A.8.16", "SOX-ITGC:OPS"),
}


def controls_for(kind: str, aspect: str) -> list[str]:
    return list(CATALOGUE.get(f"{kind}.{aspect}", CATALOGUE.get(kind, ())))
