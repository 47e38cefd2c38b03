"""Environment profiles: YAML in, validated and typed models out.

A profile names the environment and lists the targets of each check kind. Loading
is strict: unknown keys, wrong types and bad values raise `ProfileError`, whose
message names the file, the line and the key::

    profiles/prod.yaml:14: http[2].expect.latency.warn: invalid duration '100 ms': ...

`${NAME}` in a string is a secret taken from the environment and registered with
the redactor; `${vars.NAME}` is a plain value from `--var NAME=VALUE` or the
environment, shown in reports; `${vars.NAME:-default}` gives it a default.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from opsproof.controls import ControlsOverride
from opsproof.fields import Defaults, IsoDate, Item, Strict, Threshold
from opsproof.redaction import Redactor
from opsproof.targets.attestations import AttestationTarget
from opsproof.targets.backups import BackupsTarget
from opsproof.targets.drills import DrillTarget
from opsproof.targets.hosts import HostTarget
from opsproof.targets.http import HttpExpect, HttpTarget
from opsproof.targets.kubernetes import KubernetesTarget
from opsproof.targets.postgres import PostgresTarget
from opsproof.targets.prometheus import PrometheusTarget
from opsproof.targets.redis import RedisTarget
from opsproof.targets.tls import TlsTarget

__all__ = [
    "AttestationTarget",
    "BackupsTarget",
    "DrillTarget",
    "HostTarget",
    "HttpExpect",
    "HttpTarget",
    "Item",
    "KubernetesTarget",
    "LoadedProfile",
    "PostgresTarget",
    "Profile",
    "ProfileError",
    "PrometheusTarget",
    "RedisTarget",
    "Threshold",
    "TlsTarget",
    "Waiver",
    "load_profile",
]


class Waiver(Strict):
    """An approved, expiring exception for failing checks."""

    check: str = Field(description="glob over check ids; * and ? are wildcards, [ ] are literal")
    reason: Annotated[str, Field(min_length=1)]
    ticket: Annotated[str, Field(min_length=1)]
    approved_by: Annotated[str, Field(min_length=1)]
    expires: IsoDate = Field(description="the last day the waiver applies (YYYY-MM-DD)")

    def matches(self, check_id: str) -> bool:
        return glob_to_regex(self.check).fullmatch(check_id) is not None


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """`*` any run, `?` one character; brackets are literal because check ids contain them."""
    parts = (".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile("".join(parts))


# Profile sections that hold named items (unique per section: the names are check ids).
ITEM_SECTIONS = (
    "http",
    "tls",
    "postgres",
    "redis",
    "backups",
    "drills",
    "kubernetes",
    "prometheus",
    "hosts",
    "attestations",
)


class Profile(Strict):
    """One environment: its targets by kind, its defaults and its waivers."""

    environment: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    description: str | None = None
    defaults: Defaults = Field(default_factory=Defaults)
    http: list[HttpTarget] = Field(default_factory=list)
    tls: list[TlsTarget] = Field(default_factory=list)
    postgres: list[PostgresTarget] = Field(default_factory=list)
    redis: list[RedisTarget] = Field(default_factory=list)
    backups: list[BackupsTarget] = Field(default_factory=list)
    drills: list[DrillTarget] = Field(default_factory=list)
    kubernetes: list[KubernetesTarget] = Field(default_factory=list)
    prometheus: list[PrometheusTarget] = Field(default_factory=list)
    hosts: list[HostTarget] = Field(default_factory=list)
    attestations: list[AttestationTarget] = Field(default_factory=list)
    controls: ControlsOverride = Field(default_factory=dict)
    waivers: list[Waiver] = Field(default_factory=list)

    @cached_property
    def items_by_section(self) -> dict[str, dict[str, Item]]:
        return {section: {item.name: item for item in getattr(self, section)} for section in ITEM_SECTIONS}

    def targets(self, section: str) -> dict[str, Item]:
        """The items of one section by name (built once: checks look them up per test)."""
        return self.items_by_section[section]

    def timeout_of(self, item: Item) -> float:
        return item.timeout if item.timeout is not None else self.defaults.timeout


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """One pass (libyaml where built in), keeping nodes for line numbers.

    Dates stay strings: pydantic parses them and names the key and line of a bad one,
    where PyYAML would raise a bare ValueError for `expires: 2026-13-01`.
    """

    yaml_implicit_resolvers: ClassVar[dict[Any, Any]] = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


class ProfileError(Exception):
    """A profile that cannot be used; the message names the file, line and key."""


class LoadedProfile(BaseModel):
    """A validated profile with where it came from and the secrets it holds."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    profile: Profile
    path: Path
    sha256: str
    redactor: Redactor
    plain_vars: dict[str, str]


_REFERENCE = re.compile(r"\$\$\{|\$\{(vars\.)?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def resolve_profile_path(name_or_path: str, root: Path) -> Path:
    """`prod` -> ROOT/profiles/prod.yaml; anything that looks like a path is a path."""
    if "/" in name_or_path or name_or_path.endswith((".yaml", ".yml")):
        path = Path(name_or_path)
        return path if path.is_absolute() else Path.cwd() / path
    return root / "profiles" / f"{name_or_path}.yaml"


def load_profile(
    path: Path,
    *,
    cli_vars: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    display_path: str | None = None,
) -> LoadedProfile:
    """Read, substitute and validate one profile file; raise ProfileError on any mistake."""
    shown = display_path or str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ProfileError(f"{shown}: profile not found") from None
    except OSError as exc:
        raise ProfileError(f"{shown}: cannot read profile: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except UnicodeDecodeError:
        raise ProfileError(f"{shown}: profile is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProfileError(f"{shown}{where}: not valid YAML: {problem}") from None
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _record_lines(node, (), lines, shown)
    if not isinstance(data, dict):
        raise ProfileError(f"{shown}: a profile is a mapping with at least `environment:`")

    redactor = Redactor()
    plain_vars: dict[str, str] = {}
    env = os.environ if environ is None else environ
    data = _substitute(data, (), lines, shown, redactor, plain_vars, dict(cli_vars or {}), env)
    try:
        profile = Profile.model_validate(data, context={"profile_dir": str(path.parent)})
    except ValidationError as exc:
        # A bad value may have come from a ${SECRET}: never echo it.
        raise ProfileError(redactor.redact(_describe(exc, lines, shown))) from None
    for section in ITEM_SECTIONS:
        seen: set[str] = set()
        for index, item in enumerate(getattr(profile, section)):
            if item.name in seen:
                line = lines.get((section, index, "name"), 1)
                message = f"{shown}:{line}: {section}[{index}].name: duplicate name {item.name!r}"
                raise ProfileError(redactor.redact(message))
            seen.add(item.name)
    backups = profile.targets("backups")
    for index, drill in enumerate(profile.drills):
        if drill.backup not in backups:
            known = ", ".join(sorted(backups)) or "none are declared"
            line = lines.get(("drills", index, "backup"), 1)
            message = f"{shown}:{line}: drills[{index}].backup: no backups item named {drill.backup!r} ({known})"
            raise ProfileError(redactor.redact(message))
        clash = drill.source_clash(profile.postgres)
        if clash is not None:
            line = lines.get(("drills", index, "target", "dsn"), lines.get(("drills", index, "target"), 1))
            raise ProfileError(redactor.redact(f"{shown}:{line}: drills[{index}].target.dsn: {clash}"))
    return LoadedProfile(
        profile=profile,
        path=path.resolve(),
        sha256=hashlib.sha256(raw).hexdigest(),
        redactor=redactor,
        plain_vars=plain_vars,
    )


def _record_lines(node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int], shown: str) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise ProfileError(f"{shown}:{key_node.start_mark.line + 1}: {_dotted((*path, key))}: duplicate key")
            seen.add(key)
            _record_lines(value_node, (*path, key), lines, shown)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, child in enumerate(node.value):
            _record_lines(child, (*path, index), lines, shown)


def _substitute(
    value: Any,
    path: tuple[Any, ...],
    lines: dict[tuple[Any, ...], int],
    shown: str,
    redactor: Redactor,
    plain_vars: dict[str, str],
    cli_vars: dict[str, str],
    env: Mapping[str, str],
) -> Any:
    if isinstance(value, dict):
        return {
            k: _substitute(v, (*path, k), lines, shown, redactor, plain_vars, cli_vars, env) for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _substitute(v, (*path, i), lines, shown, redactor, plain_vars, cli_vars, env) for i, v in enumerate(value)
        ]
    if not isinstance(value, str) or "$" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        is_plain, name, default = match.group(1), match.group(2), match.group(3)
        if is_plain:
            found = cli_vars.get(name, env.get(name, default))
            if found is None:
                raise ProfileError(
                    f"{shown}:{_line(path, lines)}: {_dotted(path)}: ${{vars.{name}}} is not set; "
                    f"pass --var {name}=VALUE or set the environment variable {name}"
                )
            plain_vars[name] = found
            return found
        if default is not None:
            raise ProfileError(
                f"{shown}:{_line(path, lines)}: {_dotted(path)}: secrets take no default (${{{name}:-...}}); "
                "set the environment variable"
            )
        secret = env.get(name)
        if secret is None:
            raise ProfileError(
                f"{shown}:{_line(path, lines)}: {_dotted(path)}: environment variable {name} is not set "
                f"(referenced as ${{{name}}})"
            )
        redactor.add(name, secret)
        return secret

    result = _REFERENCE.sub(replace, _check_references(value, path, lines, shown))
    return result


def _check_references(value: str, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int], shown: str) -> str:
    """Refuse `${...}` that is not a valid reference, rather than sending it as a literal token."""
    leftover = _REFERENCE.sub("", value)
    if "${" in leftover:
        start = leftover.index("${")
        end = leftover.find("}", start)
        bad = leftover[start : end + 1] if end != -1 else leftover[start : start + 40] + " (no closing })"
        raise ProfileError(
            f"{shown}:{_line(path, lines)}: {_dotted(path)}: {bad!r} is not a valid reference; "
            "use ${NAME} (a secret), ${vars.NAME} or ${vars.NAME:-default}; write $${ for a literal ${"
        )
    return value


def _line(path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int:
    """The line of the deepest part of `path` the YAML has (a missing key: its parent)."""
    for cut in range(len(path), -1, -1):
        if path[:cut] in lines:
            return lines[path[:cut]]
    return 1


def _dotted(path: tuple[Any, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _describe(exc: ValidationError, lines: dict[tuple[Any, ...], int], shown: str) -> str:
    messages = []
    for error in exc.errors():
        # pydantic adds the generic model name for parametrized models; users never wrote it.
        loc = tuple(part for part in error["loc"] if not (isinstance(part, str) and "[" in part))
        what = _message(error)
        messages.append(f"{shown}:{_line(loc, lines)}: {_dotted(loc)}: {what}")
    return "\n".join(messages)


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":
        return str(error["ctx"]["error"]) if "ctx" in error else error["msg"]
    if kind in ("model_type", "dict_type"):
        return f"expected a mapping (got {type(error.get('input')).__name__})"
    if kind == "list_type":
        return f"expected a list (got {type(error.get('input')).__name__})"
    got = error.get("input")
    shown = f" (got {got!r})" if isinstance(got, (str, int, float, bool)) or got is None else ""
    message = error["msg"]
    return f"{message[:1].lower()}{message[1:]}{shown}"


def profile_json_schema() -> dict[str, Any]:
    """The JSON Schema editors use to validate profiles."""
    schema = Profile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "opsproof profile"
    return schema
