"""Which compliance controls each kind of check gives evidence for.

A starting catalogue; records carry these ids so reports can roll results up by
control. Keys are `kind.aspect` or `kind`; the most specific wins.
"""

from __future__ import annotations

CATALOGUE: dict[str, tuple[str, ...]] = {
    # Availability monitoring of service health: SOC 2 monitoring and availability,
    # ISO 27001 monitoring activities, SOX ITGC computer operations.
    "http": ("SOC2:CC7.1", "SOC2:A1.1", "ISO27001:A.8.16", "SOX-ITGC:OPS"),
    # Certificates: cryptographic controls kept valid (ISO A.8.24), monitored (CC7.1).
    "tls": ("SOC2:CC7.1", "SOC2:CC6.7", "ISO27001:A.8.24", "SOX-ITGC:OPS"),
    # Databases and caches: monitoring, capacity (A1.1, ISO A.8.6) and operations.
    "postgres": ("SOC2:CC7.1", "SOC2:A1.1", "ISO27001:A.8.6", "ISO27001:A.8.16", "SOX-ITGC:OPS"),
    "postgres.query": ("SOC2:CC7.1", "SOX-ITGC:OPS"),
    "postgres.replication_lag": ("SOC2:CC7.1", "SOC2:A1.2", "ISO27001:A.8.14", "SOX-ITGC:OPS"),
    "postgres.wal_archiving": ("SOC2:CC7.1", "SOC2:A1.2", "ISO27001:A.8.13", "SOX-ITGC:OPS"),
    "redis": ("SOC2:CC7.1", "SOC2:A1.1", "ISO27001:A.8.6", "ISO27001:A.8.16", "SOX-ITGC:OPS"),
    "redis.persistence": ("SOC2:CC7.1", "SOC2:A1.2", "ISO27001:A.8.13", "SOX-ITGC:OPS"),
    "redis.replication": ("SOC2:CC7.1", "SOC2:A1.2", "ISO27001:A.8.14", "SOX-ITGC:OPS"),
}


def controls_for(kind: str, aspect: str) -> list[str]:
    return list(CATALOGUE.get(f"{kind}.{aspect}", CATALOGUE.get(kind, ())))
