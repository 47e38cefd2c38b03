"""Witnesses of a chain: records kept outside the report folder of which bundles were sealed.

A bundle folder's chain proves that nothing in it was changed, slipped in or removed from
the middle. It cannot prove that nothing was removed from the end: whoever can write the
folder can delete the newest bundles and point `.chain/<environment>.json` at the one
before, and the shorter chain is whole. Only a record kept elsewhere can tell: the history
(in PostgreSQL on another host, or the report dir's SQLite file when the attacker did not
also edit it) and the bundles uploaded to S3 under Object Lock. `opsproof verify --chain`
holds the folder against each witness it is given: every bundle a witness knows of must
be in the chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from opsproof.compliance.history import History, Location
from opsproof.evidence.chain import BUNDLE_NAME
from opsproof.evidence.manifest import MANIFEST


@dataclass
class Witness:
    """What one witness knows: the bundles it saw sealed, by environment."""

    name: str
    bundles: dict[str, set[str]] = field(default_factory=dict)

    def missing(self, environment: str, chain: set[str]) -> list[str]:
        """The bundles of `environment` this witness knows of that are not in the chain, as findings."""
        return [
            f"{bundle}: {self.name} knows of it, but it is not in the folder: removed"
            for bundle in sorted(self.bundles.get(environment, set()) - chain)
        ]


def history_witness(location: Location) -> Witness:
    """The runs a history recorded (a reader: a missing SQLite file is not created)."""
    witness = Witness(f"the history {location.shown}")
    with History(location, create=False) as history:
        for environment, bundle in history.execute("SELECT environment, bundle FROM runs"):
            witness.bundles.setdefault(str(environment), set()).add(str(bundle))
    return witness


def s3_witness(url: str, endpoint_url: str | None) -> Witness:
    """The bundles uploaded under an S3 prefix: every `<bundle>/manifest.json` ever put, delete markers or not."""
    from opsproof.compliance.upload import client, object_versions, parse_s3_url

    target = parse_s3_url(url, endpoint_url, option="--witness")
    witness = Witness(f"the uploads under {target.url}")
    for path in object_versions(client(target), target):
        bundle, _, name = path.partition("/")
        found = BUNDLE_NAME.fullmatch(bundle)
        if name == MANIFEST and found is not None:
            witness.bundles.setdefault(found.group("environment"), set()).add(bundle)
    return witness
