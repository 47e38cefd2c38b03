"""Keep `${VAR}` secrets out of every output.

Every value that came from a `${NAME}` reference in a profile is registered here;
every writer (terminal reports, results.json, JUnit, HTML, Allure, the history) passes
its free text through the run's redactor (`RunState.redactor`, handed to the probes as
`ProbeContext.redactor`), which puts the reference back in place of the value::

    >>> r = Redactor(); r.add("WALLET_TOKEN", "s3cr3t-value")
    >>> r.redact("Authorization: Bearer s3cr3t-value")
    'Authorization: Bearer ${WALLET_TOKEN}'

What is redacted, and what never is:

- Only free text: messages, observed and expected values, commands, excerpts,
  tracebacks. Structural fields (outcome, ids, check, kind, target names, severity,
  markers, JSON keys) are never rewritten: a secret `pass` must not turn the outcome
  `passed` into `${PW}ed`. `redact_fields` applies the redactor to the fields a record
  declares as free text.
- A secret is found in every form an output gives it: raw; URL-encoded in part or
  whole, in either hex case, doubly encoded, `+` for a space; HTML entities; JSON and
  Python escapes (`\\u00e9`, `\\x2f`); the hex and base64 of its UTF-8 bytes, and the
  base64 of `user:value` for Basic auth (`add_basic_auth`).
- The short-secret rule: a secret shorter than `SHORT` characters cannot be told from
  an ordinary word (`pass`, `error`, `a`), so it is replaced only where it stands as a
  whole token (no letter, digit or `_` against it on a side where the secret itself
  starts or ends with one). `cannot connect` stays whole when a secret is `t`.
"""

from __future__ import annotations

import base64
import functools
import html
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

# Secrets shorter than this are redacted only as whole tokens (see the module docstring).
SHORT = 8

_NAMED_ENTITIES = {"&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "apos"}
_PY_ESCAPES = {"\\": "\\\\", "'": "\\'", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_JSON_ESCAPES = {"\\": "\\\\", '"': '\\"', "/": "\\/", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
# What may stand right before a short secret that still ends the token before it:
# an escape (`%2F`, `\u0026`, `\n`) ends in a letter or digit but is not part of a word.
_TOKEN_START = r"(?:(?<!\w)|(?<=%[0-9A-Fa-f]{2})|(?<=\\u[0-9A-Fa-f]{4})|(?<=\\[nrt]))"
_TOKEN_END = r"(?!\w)"
_WORD = re.compile(r"\w")
# An escape a secret may stand in (URL, HTML, JSON, Python); `80%` or `a & b` is none.
_ESCAPED = re.compile(r"%[0-9A-Fa-f]{2}|&#?[0-9A-Za-z]+;|\\[\\\"'/bfnrtux]")


def _lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)


def encoded_forms(value: str, user: str | None = None) -> set[str]:
    """The whole-string forms a secret takes in outputs; the redactor's tests and the leak scanner search these.

    Raw; URL-encoded (every character, or as `quote`/`quote_plus` leave it, hex in either
    case); base64 (standard and URL-safe) of the value and of `user:value`; JSON- and
    HTML-escaped; hex (either case); Python's repr of the str and of its UTF-8 bytes.
    """
    raw = value.encode()
    forms = {value, quote(value), quote(value, safe=""), quote_plus(value), quote_plus(value, safe="")}
    forms |= {_lower_hex(form) for form in forms}
    for data in (raw, *([f"{user}:{value}".encode()] if user is not None else [])):
        forms.add(base64.b64encode(data).decode())
        forms.add(base64.urlsafe_b64encode(data).decode())
    forms |= {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    forms |= {html.escape(value), html.escape(value, quote=False)}
    forms |= {raw.hex(), raw.hex().upper(), repr(value)[1:-1], repr(raw)[2:-1]}
    return {form for form in forms if form}


def _any_case(digits: str) -> str:
    """Hex digits as a pattern that takes either case: `2f` -> `2[fF]`."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in digits)


def _hex_byte(byte: int) -> str:
    """`%2f` or `%2F` (or doubly encoded `%252F`), as a pattern."""
    return f"%(?:25)?{_any_case(f'{byte:02x}')}"


def _char_pattern(char: str) -> str:
    """Every way one character of a secret is written in text: raw, URL-, HTML-, JSON- or Python-escaped."""
    code = ord(char)
    utf8 = char.encode()
    ways = [re.escape(char), "".join(_hex_byte(b) for b in utf8)]
    if char == " ":
        ways += [r"\+", "%(?:25)?2[bB]"]  # form-encoded, and that `+` URL-encoded again
    ways.append(f"&#0*{code};")
    ways.append(f"&#[xX]0*{_any_case(f'{code:x}')};")
    if char in _NAMED_ENTITIES:
        ways.append(f"&{_NAMED_ENTITIES[char]};")
    units = [code] if code < 0x10000 else [0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)]
    ways.append("".join(r"\\u" + _any_case(f"{unit:04x}") for unit in units))
    for escapes in (_PY_ESCAPES, _JSON_ESCAPES):
        if char in escapes:
            ways.append(re.escape(escapes[char]))
    if code >= 0x80 or code < 0x20:
        ways.append("".join(rf"\\x{b:02x}" for b in utf8))  # a bytes repr
    return "(?:" + "|".join(dict.fromkeys(ways)) + ")"


def _transformed_forms(value: str) -> set[str]:
    """The forms no character-by-character pattern finds: base64 and hex of the UTF-8 bytes.

    Also the base64 of `value` as it stands inside a longer base64 text (`someone:value`
    for a user the profile does not name), in each of the three alignments: only the
    4-character groups made of the value's bytes alone, when they are long enough.
    """
    raw = value.encode()
    forms = {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode(), raw.hex(), raw.hex().upper()}
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        core = encoded[4 if shift else 0 : (shift + len(raw)) // 3 * 4]
        if len(core) >= SHORT:
            forms.add(core)
    return forms


class Redactor:
    """Replaces known secret values, in every encoding an output gives them, in free text."""

    def __init__(self) -> None:
        self._secrets: dict[str, str] = {}  # value -> what stands in its place (`${NAME}`)
        self._basic: dict[tuple[str, str], str] = {}  # (user, value) -> what stands in its place
        # Compiled on first use after a change, with short secrets and without: (pattern, group name -> placeholder,
        # the literal forms that are all a text holding no escape can hold).
        self._compiled: dict[bool, tuple[re.Pattern[str], dict[str, str], tuple[str, ...]]] = {}
        # Counts the changes: what was redacted ahead (a record's pieces, made as its check ended) is
        # used only when the redactor has not changed since.
        self.version = 0

    def add(self, name: str, value: str, *, shown: str | None = None) -> None:
        """Redact `value` as `${name}` (or as `shown`)."""
        placeholder = shown if shown is not None else "${" + name + "}"
        if not value or self._secrets.get(value) == placeholder:
            return
        self._secrets[value] = placeholder  # the latest name wins, as the reference the profile now uses
        self._compiled.clear()
        self.version += 1

    def add_basic_auth(self, user: str, value: str) -> None:
        """A Basic-auth pair: the base64 of `user:value` is known as well (a server may echo the header)."""
        placeholder = self._secrets.get(value)
        if placeholder is None or not user:
            return
        self._basic[(user, value)] = placeholder
        self._compiled.clear()
        self.version += 1

    def update(self, other: Redactor) -> None:
        """Take on every secret `other` knows."""
        for value, placeholder in other._secrets.items():
            self.add("", value, shown=placeholder)
        for (user, value), _ in other._basic.items():
            self.add_basic_auth(user, value)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def hides(self, text: str) -> bool:
        """True when `text` holds a registered secret (it came from a `${NAME}` reference)."""
        return self.redact(text) != text

    def _compile(self, short: bool) -> tuple[re.Pattern[str], dict[str, str], tuple[str, ...]]:
        alternatives: list[tuple[int, str, str]] = []  # (length, pattern, placeholder)
        # Every character a match can start with: most of a text starts none, and one class test there
        # spares trying each alternative (measured: 17 times faster on records holding no secret).
        starts = {"%", "&", "\\"}
        literals: set[str] = set()
        for value, placeholder in self._secrets.items():
            is_short = len(value) < SHORT
            if is_short and not short:
                continue
            chars = "".join(map(_char_pattern, value))
            if is_short:
                before = _TOKEN_START if _WORD.match(value[0]) else ""
                after = _TOKEN_END if _WORD.match(value[-1]) else ""
                chars = before + chars + after
            alternatives.append((len(value), chars, placeholder))
            literals |= {value, value.replace(" ", "+")}
            starts |= {value[0], "+"}
            for form in _transformed_forms(value):
                literals.add(form)
                starts.add(form[0])
                # A short base64 or hex form is as likely as a short word: whole tokens only.
                shown = re.escape(form) if len(form) >= SHORT else rf"(?<![\w+/=-]){re.escape(form)}(?![\w+/=-])"
                alternatives.append((len(form), shown, placeholder))
        for (user, value), placeholder in self._basic.items():
            data = f"{user}:{value}".encode()
            for form in (base64.b64encode(data).decode(), base64.urlsafe_b64encode(data).decode()):
                literals.add(form)
                starts.add(form[0])
                alternatives.append((len(form), re.escape(form), placeholder))
        # Longest first: a secret holding another is replaced whole, and an encoded form before a raw one.
        alternatives.sort(key=lambda a: a[0], reverse=True)
        names = {f"s{i}": placeholder for i, (_, _, placeholder) in enumerate(alternatives)}
        if not alternatives:
            return re.compile("(?!)"), names, ()
        pattern = "|".join(f"(?P<s{i}>{p})" for i, (_, p, _) in enumerate(alternatives))
        first = "".join(re.escape(c) for c in sorted(starts))
        return re.compile(f"(?=[{first}])(?:{pattern})"), names, tuple(literals)

    def redact(self, text: str, *, short: bool = True) -> str:
        """`text` with every secret replaced by its `${NAME}`.

        `short=False` leaves secrets shorter than `SHORT` alone: for text that is not
        only free text (a whole rendered file, a probe's raw facts), where a short secret
        could be an outcome or a key.
        """
        if not self._secrets:
            return text
        if short not in self._compiled:
            self._compiled[short] = self._compile(short)
        pattern, names, literals = self._compiled[short]
        # Most text holds no escape at all: then only a literal form can be there, and `in` finds it
        # far faster than the pattern (measured 11 ms against 420 ms per 1,000 records).
        if not _ESCAPED.search(text) and not any(form in text for form in literals):
            return text
        return pattern.sub(lambda m: names[m.lastgroup or ""], text)

    def redact_data(self, data: Any, *, short: bool = True) -> Any:
        """A deep copy of JSON-like data with every string value redacted; keys are structure and stay."""
        if not self._secrets:
            return data
        if isinstance(data, str):
            return self.redact(data, short=short)
        if isinstance(data, dict):
            return {k: self.redact_data(v, short=short) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [self.redact_data(v, short=short) for v in data]
        return data

    def redact_fields(self, record: dict[str, Any], free_text: Iterable[str]) -> dict[str, Any]:
        """A copy of `record` with its free-text fields redacted; every other field is structure and stays."""
        if not self._secrets:
            return record
        return {k: self.redact_data(v) if k in free_text else v for k, v in record.items()}

    def excerpt(self, text: str, limit: int) -> str:
        """At most `limit` characters of `text`, redacted first: a cut never leaves part of a secret behind."""
        text = self.redact(text)
        return text if len(text) <= limit else text[:limit] + "..."


@functools.lru_cache(maxsize=256)
def _masking(value: str, shown: str) -> Redactor:
    redactor = Redactor()
    redactor.add("", value, shown=shown)
    return redactor


def mask(text: str, value: str | None, shown: str = "***") -> str:
    """`text` without `value` (a password written literally, a kubeconfig's token), by the redactor's rules.

    The same encodings and the same short-secret rule as `${NAME}` secrets: a password
    `t` never turns `cannot connect` into `canno*** connec***`.
    """
    return _masking(value, shown).redact(text) if value else text
