"""Keep `${VAR}` secrets out of every output.

Every value that came from a `${NAME}` reference in a profile is registered here;
every writer (terminal reports, results.json, JUnit, HTML, Allure) passes its text
through the run's redactor (`RunState.redactor`, handed to the probes as
`ProbeContext.redactor`), which puts the reference back in place of the value::

    >>> r = Redactor(); r.add("WALLET_TOKEN", "s3cr3t")
    >>> r.redact("Authorization: Bearer s3cr3t")
    'Authorization: Bearer ${WALLET_TOKEN}'
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote, quote_plus


class Redactor:
    """Replaces known secret values (and their URL-encoded and base64 forms) in text."""

    def __init__(self) -> None:
        self._replacements: dict[str, str] = {}
        self._longest_first: list[str] = []  # sorted once per new secret, not once per string redacted

    def add(self, name: str, value: str) -> None:
        if not value:
            return
        placeholder = "${" + name + "}"
        # Drivers echo secrets encoded: URL-quoted in DSNs, base64 in Basic auth.
        forms = {value, quote(value, safe=""), quote_plus(value), quote(value)}
        forms.add(base64.b64encode(value.encode()).decode())
        # ...and escaped, as error messages quote values: repr() and JSON strings.
        forms.add(repr(value)[1:-1])
        forms.add(json.dumps(value)[1:-1])
        for form in forms:
            self._replacements[form] = placeholder
        self._sort()

    def update(self, other: Redactor) -> None:
        """Take on every secret `other` knows."""
        self._replacements.update(other._replacements)
        self._sort()

    def _sort(self) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        self._longest_first = sorted(self._replacements, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._replacements)

    def redact(self, text: str) -> str:
        for form in self._longest_first:
            if form in text:
                text = text.replace(form, self._replacements[form])
        return text

    def redact_data(self, data: Any) -> Any:
        """A deep copy of JSON-like data with every string redacted."""
        if not self._replacements:
            return data
        if isinstance(data, str):
            return self.redact(data)
        if isinstance(data, dict):
            return {self.redact_data(k): self.redact_data(v) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [self.redact_data(v) for v in data]
        return data
