"""Profile model of `attestations`: manual runbook lines a person attests to, once per period.

Many runbook lines are human ("review overnight alerts", "update emergency contact
information", the monthly SLA review). Each becomes an attestation: someone allowed
to attests with `opsproof attest ID --by NAME --note TEXT [--evidence FILE]`, and the
run of its cadence has a check `attestations.attested[ID]` that passes only when a
valid attestation exists for the current period (UTC day, ISO week or month)::

    attestations:
      - id: review-overnight-alerts        # `name:` works too; the check id's bracket
        title: Review overnight alerts and resolve any issues
        cadence: daily
        controls: [SOC2:CC7.2, SOC2:CC7.3, SOX-ITGC:OPS]
        attesters: [alice, bob]            # who may attest; ["*"] lets anyone
      - id: sla-review
        title: Conduct the service level agreement (SLA) review
        cadence: monthly
        attesters: [head-of-ops]
        evidence_required: true            # the attestation must carry --evidence FILE
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, ConfigDict, Field, StrictBool, field_validator, model_validator

from opsproof.model.controls import ControlId
from opsproof.model.fields import Cadence, Item, Name
from opsproof.model.kind import Kind

Attester = Annotated[
    str,
    Field(min_length=1, max_length=100, pattern=r"^(\*|[^\s,][^,]*[^\s,]|[^\s,])$", description="a person's name"),
]


def _id_or_name(schema: dict[str, Any]) -> None:
    """The JSON Schema editors use: `id:` and `name:` are the same key, and one of them is required."""
    properties = schema.get("properties", {})
    if "name" in properties:
        properties["id"] = properties["name"]
        schema["required"] = [key for key in schema.get("required", []) if key != "name"]
        schema["oneOf"] = [{"required": ["name"]}, {"required": ["id"]}]


class AttestationTarget(Item):
    """One manual checklist line, attested once per period of its cadence."""

    model_config = ConfigDict(**Item.model_config, json_schema_extra=_id_or_name)

    name: Name = Field(
        validation_alias=AliasChoices("name", "id"),
        description="the attestation's id (`id:` or `name:`): `opsproof attest ID` and the check id use it",
    )
    title: Annotated[str, Field(min_length=1, max_length=300)] = Field(description="the runbook line, as people say it")
    # Wider than an item's cadence: only a manual line can be bound to a change rather than a calendar.
    cadence: Cadence | Literal["change"] = Field(  # type: ignore[assignment]
        description="daily, weekly, monthly, quarterly or yearly: the period one attestation covers; change: one "
        "attestation per change (`opsproof attest ID --change TICKET`), checked by the post-deploy run of that change"
    )
    controls: list[ControlId] = Field(
        default_factory=list, description="the controls it gives evidence for (default: SOX-ITGC:OPS)"
    )
    attesters: Annotated[list[Attester], Field(min_length=1)] = Field(
        description='the people who may attest (as given to --by); ["*"] lets anyone'
    )
    evidence_required: StrictBool = Field(False, description="an attestation must carry an --evidence file")

    @field_validator("attesters")
    @classmethod
    def _unique_attesters(cls, value: list[str]) -> list[str]:
        if "*" in value and len(value) > 1:
            raise ValueError('"*" (anyone) cannot be combined with names')
        duplicates = sorted({name for name in value if value.count(name) > 1})
        if duplicates:
            raise ValueError(f"{duplicates[0]!r} is listed twice")
        return value

    @model_validator(mode="before")
    @classmethod
    def _change_lines_gate_the_deploy(cls, data: Any) -> Any:
        # A change checklist is checked where the change is validated: the post-deploy run.
        if isinstance(data, dict) and data.get("cadence") == "change" and "post_deploy" not in data:
            return {**data, "post_deploy": True}
        return data

    def may_attest(self, who: str) -> bool:
        return "*" in self.attesters or who in self.attesters


KIND = Kind(
    name="attestations",
    target=AttestationTarget,
    probe="opsproof.probes.attestations",
    checks="checks/compliance/test_attestations.py",
    # every attestation declares its own cadence; this one is never used
    cadence="daily",
    areas=("compliance",),
    controls={
        # Attestations name their own controls; an item that names none is operations evidence.
        "attestations": ("SOX-ITGC:OPS",),
    },
)
