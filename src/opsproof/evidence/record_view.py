"""A check record model read as report.html reads a record: as the dict its dump would be, without the dump.

At 10,000 checks, `Results.dump()` made ~18 MiB of dicts (every record, its observed and
expected facts, its lists) only for the page to read them once; a view reads the model's
own values. What a view gives for a key is what `model_dump(exclude_unset=True)` holds
there, read the way `page.Lenient` reads a dict (a key the record does not have is None):

- a value of plain JSON types (str, int, float, bool, None, and lists and dicts of them),
  which is every value a run records, is the model's own object (the page only reads it);
- the waiver and the maintenance window are their dumps, as `Lenient` dicts;
- anything else (an object a check of one's own recorded) is what the dump makes of it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel

from opsproof.evidence.page import Lenient
from opsproof.model.results import CheckRecord

_SCALARS = (str, int, float, bool, type(None))
# The fields whose type holds only JSON's own (str, float, literals, lists of str): no need to look at the value.
_TYPED = frozenset(
    name
    for name, field in CheckRecord.model_fields.items()
    if not any(word in str(field.annotation) for word in ("Any", "Waiver", "Maintenance"))
)

# A record's keys in the dump's order, by the fields set and the extra keys: one tuple shared by the records
# alike, with them as a set (looked up on every read).
_KEYS: dict[tuple[frozenset[str], tuple[str, ...]], tuple[tuple[str, ...], frozenset[str]]] = {}


class RecordView(Mapping[str, Any]):
    """One `CheckRecord` as a read-only mapping; see the module docstring."""

    __slots__ = ("_keys", "_known", "_record")

    def __init__(self, record: CheckRecord) -> None:
        self._record = record
        given = (frozenset(record.model_fields_set), tuple(record.__pydantic_extra__ or ()))
        known = _KEYS.get(given)
        if known is None:
            # The dump's keys, in its order: the declared fields that were set, then the extra ones.
            keys = (*(name for name in type(record).model_fields if name in given[0]), *given[1])
            known = _KEYS[given] = (keys, frozenset(keys))
        self._keys, self._known = known

    def __getitem__(self, key: str) -> Any:
        # As `page.Lenient`: what the record does not have is None, never a KeyError.
        return self.get(key)

    def get(self, key: str, default: Any = None) -> Any:
        if key not in self._known:
            return default
        if key in _TYPED:  # typed str, float, list[str]...: the dump's value is the model's own
            return self._record.__dict__[key]
        value = getattr(self._record, key)
        if _plain(value):
            return value
        if isinstance(value, BaseModel):
            return Lenient(value.model_dump(exclude_unset=True))
        return self._record.model_dump(exclude_unset=True, include={key})[key]

    def __contains__(self, key: object) -> bool:
        return key in self._known

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def _plain(value: Any) -> bool:
    """Whether a value is made only of JSON's types: the dump would give an equal value."""
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or (type(item) not in _SCALARS and not _plain(item)):
                return False
        return True
    if kind is list:
        return all(type(item) in _SCALARS or _plain(item) for item in value)
    return kind in _SCALARS
