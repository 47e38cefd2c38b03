"""The profile keys of a kind as a Markdown table, read from its pydantic model.

The docs site's key tables are made from this at build time (the hook reference.py beside
it), so a key added to a model, or a default changed, shows in the docs without anyone
editing them. It lives with the docs, not in the package: it reads every layer's models
and nothing in opsproof needs it::

    >>> print(keys_table("http").splitlines()[2])
    | `name` | string | **required** | letters, digits and _ . : - ; used in check ids |

Nested models are flattened into dotted keys (`expect.latency`); a threshold is one key
whose type says what its `warn` and `fail` take.
"""

from __future__ import annotations

import ast
import json
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import AliasChoices, BaseModel, WithJsonSchema
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from opsproof import targets, units
from opsproof.model import controls, markers
from opsproof.model.fields import AspectThreshold, Defaults, Item, Threshold
from opsproof.model.results import Results
from opsproof.profile import Waiver

# Sections that are not kinds but whose keys the docs list the same way.
# `item` is what every kind's items have in common.
_OTHER_SECTIONS: dict[str, type[BaseModel]] = {"defaults": Defaults, "waivers": Waiver, "item": Item}

_UNITS = (
    (units.DURATION_PATTERN, "duration", units.format_duration),
    (units.SIZE_PATTERN, "size", units.format_size),
    (units.PERCENT_PATTERN, "percentage", lambda value: f"{value:g}%"),
)


@dataclass(frozen=True)
class KeyRow:
    """One profile key: its dotted name, its type in words, its default and what it does."""

    key: str
    type: str
    default: str
    description: str
    also: tuple[str, ...] = ()  # other names the same key may be written under (`id:` for `name:`)
    nullable: bool = False  # `X | None`: the key may hold null


def kind_models() -> dict[str, type[Item]]:
    """Every kind's item model, by profile section, from the registry of kinds (`KIND = Kind(...)`)."""
    return {name: typing.cast(type[Item], declared.target) for name, declared in targets.kinds().items()}


def documented_models() -> dict[str, type[BaseModel]]:
    """The models `keys_table` knows by name: every kind, `defaults`, `waivers` and `item` (keys every item has)."""
    return {**kind_models(), **_OTHER_SECTIONS}


def keys_table(section: str) -> str:
    """A Markdown table of the keys of one profile section (`http`, `defaults`, ...)."""
    models = documented_models()
    if section not in models:
        raise KeyError(f"no profile section {section!r}: known are {', '.join(sorted(models))}")
    lines = ["| key | type | default | what it does |", "| --- | --- | --- | --- |"]
    for row in key_rows(models[section]):
        key = " or ".join(f"`{name}`" for name in (row.key, *row.also))
        lines.append(f"| {key} | {_cell(row.type)} | {_cell(row.default)} | {_cell(row.description)} |")
    return "\n".join(lines) + "\n"


def results_table() -> str:
    """results.json field by field, from its typed model (`opsproof.model.results.Results`)."""
    lines = ["| field | type | present | what it holds |", "| --- | --- | --- | --- |"]
    for row in key_rows(Results):
        # Keys whose default is None are left out of the document unless set (Results.dump).
        present = "when set" if row.default == "none" else "always"
        shown = f"{row.type} or null" if row.nullable and present == "always" else row.type
        lines.append(f"| `{row.key}` | {_cell(shown)} | {present} | {_cell(row.description)} |")
    return "\n".join(lines) + "\n"


def controls_table() -> str:
    """The controls catalogue (each kind's `KIND.controls`) as a table: kind or kind.aspect -> control ids."""
    lines = ["| kind (aspect) | controls |", "| --- | --- |"]
    catalogue = targets.catalogue()
    for key in sorted(catalogue, key=lambda key: (key.split(".")[0], "." in key, key)):
        ids = ", ".join(f"`{control}`" for control in catalogue[key])
        shown = f"{ids}; an item's own `controls:` replace them" if key == "attestations" else ids
        lines.append(f"| `{key}` | {shown} |")
    change = ", ".join(f"`{control}`" for control in controls.CHANGE_CONTROLS)
    lines.append(f"| any `post_deploy` check of a run that names its change | also {change} |")
    return "\n".join(lines) + "\n"


REPO = Path(__file__).resolve().parents[2]


def check_ids(kind: str) -> list[str]:
    """The check ids of a kind, read from its checks file: `postgres.query[<name>/<part>]`, `*` where configured."""
    module = ast.parse((REPO / targets.kind(kind).checks).read_text())
    ids = []
    for node in module.body:
        if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test_"):
            continue
        decorators = {_decorator_name(decorator) for decorator in node.decorator_list}
        bracket = "[<name>/<part>]" if "each" in decorators else "[<name>]"
        ids.append(f"`{kind}.{node.name.removeprefix('test_')}{bracket}`" + ("\\*" if "applies" in decorators else ""))
    return ids


def _decorator_name(decorator: ast.expr) -> str:
    called = decorator.func if isinstance(decorator, ast.Call) else decorator
    return called.id if isinstance(called, ast.Name) else called.attr if isinstance(called, ast.Attribute) else ""


def kinds_table() -> str:
    """Every registered kind: its page, its check ids, its default cadence and its markers (its declaration's)."""
    lines = ["| kind | checks | cadence | markers |", "| --- | --- | --- | --- |"]
    for name, declared in targets.kinds().items():
        # post_deploy by default is the kind's declaration (an item or a part may change it), not its file's.
        default = ["post_deploy"] if declared.post_deploy else []
        markers_of = ", ".join(f"`{marker}`" for marker in [*declared.areas, *default])
        lines.append(f"| [`{name}`]({name}.md) | {', '.join(check_ids(name))} | `{declared.cadence}` | {markers_of} |")
    return "\n".join(lines) + "\n"


def markers_table() -> str:
    """Every marker the plugin registers: cadences, areas and the post-deploy stage, with what each selects."""
    lines = ["| marker | kind of marker | selects |", "| --- | --- | --- |"]
    for group, marks in (
        ("cadence", markers.CADENCE_MARKERS),
        ("area", markers.AREA_MARKERS),
        ("stage", markers.STAGE_MARKERS),
    ):
        lines += [f"| `{mark}` | {group} | {_cell(meaning)} |" for mark, meaning in marks.items()]
    return "\n".join(lines) + "\n"


def control_titles_table() -> str:
    """Every control of the catalogue's frameworks, with what it asks."""
    lines = ["| control | what it asks |", "| --- | --- |"]
    lines += [f"| `{control}` | {_cell(title)} |" for control, title in controls.CONTROLS.items()]
    return "\n".join(lines) + "\n"


def key_rows(model: type[BaseModel], prefix: str = "") -> Iterator[KeyRow]:
    """The model's keys in declaration order, nested models flattened after their own key."""
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        nested, listed = _nested_model(field.annotation), _listed_model(field.annotation)
        if nested is not None:
            shown = f"mapping (`{key}.*` below)"
        elif listed is not None:
            elements = describe_type(field.annotation, field.metadata).removeprefix("list of ")
            shown = f"list of {elements} (`{key}[].*` below)"
        else:
            shown = describe_type(field.annotation, field.metadata)
        yield KeyRow(
            key=key,
            type=shown,
            default=_default(field),
            description=field.description or _doc_of(nested or listed),
            also=tuple(prefix + alias for alias in _other_names(field, field.alias or name)),
            nullable=_nullable(field.annotation),
        )
        if nested is not None:
            yield from key_rows(nested, prefix=key + ".")
        if listed is not None:
            yield from key_rows(listed, prefix=key + "[].")


def _other_names(field: FieldInfo, key: str) -> list[str]:
    """Names a key is also read under (`validation_alias=AliasChoices("name", "id")`)."""
    choices = field.validation_alias.choices if isinstance(field.validation_alias, AliasChoices) else []
    return [choice for choice in choices if isinstance(choice, str) and choice != key]


def describe_type(annotation: Any, metadata: list[Any] | None = None) -> str:
    """A type in the words of the profile docs: `duration`, `list of string`, `{warn, fail} of percentage`."""
    unit = _unit(metadata or [])
    if unit is not None:
        return unit[0]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return describe_type(args[0], list(args[1:]))
    if origin in (Union, types.UnionType):
        shown = list(dict.fromkeys(describe_type(arg) for arg in args if arg is not type(None)))
        if "integer" in shown and "number" in shown:
            shown.remove("integer")  # a number may be whole; "integer or number" says nothing more
        return " or ".join(shown)
    if origin is Literal:
        return "one of " + ", ".join(f"`{_yaml(value)}`" for value in args)
    if origin in (list, tuple, set, frozenset):
        return f"list of {describe_type(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {describe_type(args[0])} to {describe_type(args[1])}" if args else "mapping"
    threshold = _threshold_of(annotation)
    if threshold is not None:
        keys = "warn, fail, severity, cadence" if _is_model(annotation, AspectThreshold) else "warn, fail"
        return f"`{{{keys}}}` of {describe_type(threshold)}"
    if _is_model(annotation, BaseModel):
        return "mapping"
    return _SCALARS.get(annotation, getattr(annotation, "__name__", str(annotation)).lower())


_SCALARS: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    Path: "path",
    date: "date (YYYY-MM-DD)",
    Any: "any",
}


def _unit(metadata: list[Any]) -> tuple[str, Callable[[float], str] | None] | None:
    """A unit type (duration, size, percentage, or a mix) from its JSON-schema metadata."""
    for entry in metadata:
        if isinstance(entry, WithJsonSchema) and isinstance(entry.json_schema, dict):
            pattern = str(entry.json_schema.get("pattern", ""))
            found = [(word, shown) for unit_pattern, word, shown in _UNITS if unit_pattern in pattern]
            if found:
                return " or ".join(word for word, _ in found), found[0][1] if len(found) == 1 else None
    return None


def _threshold_of(annotation: Any) -> Any | None:
    """`X` of `Threshold[X]`, else None."""
    meta = getattr(annotation, "__pydantic_generic_metadata__", None)
    origin = meta.get("origin") if meta else None
    if isinstance(origin, type) and issubclass(origin, Threshold) and meta and meta.get("args"):
        return meta["args"][0]
    return None


def _nullable(annotation: Any) -> bool:
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return typing.get_origin(annotation) in (Union, types.UnionType) and type(None) in typing.get_args(annotation)


def _bare(annotation: Any) -> Any:
    """The annotation without `Annotated[...]` and without `| None`; a union of several types stays one."""
    while True:
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
        if origin is Annotated:
            annotation = args[0]
            continue
        if origin in (Union, types.UnionType):
            others = [arg for arg in args if arg is not type(None)]
            if len(others) == 1:
                annotation = others[0]
                continue
        return annotation


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model a key holds, when it is one mapping of keys of its own (not a threshold, not a list)."""
    bare = _bare(annotation)
    if _is_model(bare, BaseModel) and _threshold_of(bare) is None:
        return typing.cast(type[BaseModel], bare)
    return None


def _listed_model(annotation: Any) -> type[BaseModel] | None:
    """The model of each element, when a key holds a list of mappings (`queries`, `kpis`)."""
    bare = _bare(annotation)
    origin, args = typing.get_origin(bare), typing.get_args(bare)
    if origin in (Union, types.UnionType):
        found = [model for model in map(_listed_model, args) if model is not None]
        return found[0] if len(found) == 1 else None
    if origin not in (list, tuple) or not args:
        return None
    element = _bare(args[0])
    if typing.get_origin(element) in (Union, types.UnionType):  # `- nginx` or `- {name: ..., process: ...}`
        models = [arg for arg in typing.get_args(element) if _is_model(arg, BaseModel)]
        element = models[0] if len(models) == 1 else None
    return _nested_model(element) if element is not None else None


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return ""
    else:
        value = field.default
    if value is None:
        return "none"
    if isinstance(value, Threshold):
        return f"`{_threshold_text(value)}`"
    if isinstance(value, BaseModel):
        return "" if _nested_model(field.annotation) else f"`{_yaml(value.model_dump(by_alias=True))}`"
    unit = _unit(field.metadata) or _unit(_annotated_metadata(field.annotation))
    if unit is not None and unit[1] is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"`{unit[1](value)}`"
    if value == [] or value == {}:
        return "none" if value == [] else "`{}`"
    if value == "":
        return '`""`'
    return f"`{_yaml(value)}`"


def _threshold_text(threshold: Threshold[Any]) -> str:
    """A parsed threshold written back in its unit: `{warn: 80%, fail: 95%}`, not `{warn: 80.0, ...}`."""
    unit = _unit(_annotated_metadata(_threshold_of(type(threshold))))
    shown = unit[1] if unit is not None and unit[1] is not None else _yaml
    limits = {"warn": threshold.warn, "fail": threshold.fail}
    return "{" + ", ".join(f"{key}: {shown(limit)}" for key, limit in limits.items() if limit is not None) + "}"


def _annotated_metadata(annotation: Any) -> list[Any]:
    for candidate in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(candidate) is Annotated:
            return list(typing.get_args(candidate)[1:])
    return []


def _yaml(value: Any) -> str:
    """A value as a profile would write it: `true`, `200`, `[200, 204]`, `{warn: 80%, fail: 95%}`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, Enum):
        return _yaml(value.value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_yaml(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml(item) for item in value) + "]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float, str)):
        return str(value)
    return json.dumps(value, default=str)


def _doc_of(model: type[BaseModel] | None) -> str:
    """The first line of a nested model's docstring: what a key holding it is for."""
    doc = (model.__doc__ or "").strip() if model is not None else ""
    return doc.splitlines()[0] if doc else ""


def _is_model(candidate: Any, base: type[Any]) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, base)


def _cell(text: str) -> str:
    """Table cells cannot hold a bare `|` or a line break."""
    return text.replace("|", "\\|").replace("\n", " ")
