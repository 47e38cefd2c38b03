"""What the compliance commands need of a profile: its environment, attestations and controls.

`opsproof attest` runs on an attester's laptop, which has none of the run's secrets
(`${PG_PASSWORD}`...). So the profile is loaded whole when it can be, and otherwise
only its `environment`, `attestations` and `controls` sections are read and
validated, with the same file:line messages.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError

from opsproof.compliance import ComplianceError
from opsproof.model.controls import ControlsOverride
from opsproof.model.fields import Strict
from opsproof.profile import (
    ProfileError,
    Substitution,
    _describe,
    load_profile,
    read_document,
    read_profile_bytes,
    resolve_profile_path,
)
from opsproof.redaction import Redactor
from opsproof.targets.attestations import AttestationTarget


class _Declared(Strict):
    environment: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    attestations: list[AttestationTarget] = Field(default_factory=list)
    controls: ControlsOverride = Field(default_factory=dict)


@dataclass(frozen=True)
class Declared:
    environment: str
    attestations: dict[str, AttestationTarget]
    controls: dict[str, list[str]] = field(default_factory=dict)
    path: str = ""

    def attestation(self, attestation_id: str) -> AttestationTarget:
        """The declared attestation; ComplianceError (exit 4) naming the declared ones otherwise."""
        found = self.attestations.get(attestation_id)
        if found is None:
            known = ", ".join(sorted(self.attestations)) or "none are declared"
            raise ComplianceError(
                f"attestation {attestation_id!r} is not declared in {self.path} (attestations: {known})"
            )
        return found


def load_declared(name_or_path: str | None, cli_vars: Mapping[str, str] | None = None) -> Declared:
    """The profile like pytest finds it (`--profile`, else $OPSPROOF_PROFILE, else demo)."""
    chosen = name_or_path or os.environ.get("OPSPROOF_PROFILE") or "demo"
    path = resolve_profile_path(chosen, Path.cwd())
    shown = str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)
    try:
        loaded = load_profile(path, cli_vars=cli_vars, display_path=shown)
    except ProfileError as exc:
        if "is not set" not in str(exc):
            raise ComplianceError(f"profile {chosen!r}: {exc}") from None
        return _partial(path, shown, chosen, dict(cli_vars or {}))
    profile = loaded.profile
    return Declared(
        environment=profile.environment,
        attestations={a.name: a for a in profile.attestations},
        controls=dict(getattr(profile, "controls", None) or {}),
        path=shown,
    )


def _partial(path: Path, shown: str, chosen: str, cli_vars: dict[str, str]) -> Declared:
    """Only the sections the compliance commands use; the others may need secrets this machine lacks."""
    try:
        document = read_document(read_profile_bytes(path, shown).decode("utf-8"), shown)
        values = Substitution(Redactor(), {}, cli_vars, os.environ)
        subset = document.data(values, only=("environment", "attestations", "controls"))
        try:
            declared = _Declared.model_validate(subset, context={"profile_dir": str(path.parent)})
        except ValidationError as exc:
            raise ProfileError(_describe(exc, document.lines, shown)) from None
    except ProfileError as exc:
        raise ComplianceError(f"profile {chosen!r}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ComplianceError(f"profile {chosen!r}: {shown}: cannot read it: {exc}") from None
    names = [a.name for a in declared.attestations]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise ComplianceError(f"profile {chosen!r}: {shown}: attestations: duplicate name {duplicate!r}")
    return Declared(
        environment=declared.environment,
        attestations={a.name: a for a in declared.attestations},
        controls=dict(declared.controls),
        path=shown,
    )
