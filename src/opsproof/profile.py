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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache, cached_property, partial
from pathlib import Path
from types import GenericAlias
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import yaml
from pydantic import Field, ValidationError, ValidationInfo, ValidatorFunctionWrapHandler, create_model, model_validator

from opsproof.errors import ProfileError
from opsproof.heap import collector_paused
from opsproof.model.bounded_read import MIB, UnreadableFile, read_regular_file
from opsproof.model.controls import ControlsOverride
from opsproof.model.fields import Defaults, IsoDate, Item, Strict, Threshold, glob_to_regex
from opsproof.model.signals import MaintenanceWindow, Notify, Pushgateway
from opsproof.model.yaml_limits import MAX_DEPTH, TooLarge, check_expansion, check_nesting, may_have_aliases
from opsproof.model.yaml_plain import ProfileLoader, read_plain
from opsproof.redaction import Redactor
from opsproof.targets import kind, names

__all__ = [
    "ITEM_SECTIONS",
    "Item",
    "LoadedProfile",
    "Profile",
    "ProfileError",
    "Threshold",
    "Waiver",
    "glob_to_regex",
    "load_profile",
]


def _no_items() -> list[Any]:
    """An empty section: `list` itself as a default factory cost ~75 us each when a model is built
    (pydantic asks `inspect.signature(list)` whether it takes the data), ~2 ms of the first profile's load."""
    return []


class Waiver(Strict):
    """An approved, expiring exception for failing checks."""

    check: str = Field(description="glob over check ids; * and ? are wildcards, [ ] are literal")
    reason: Annotated[str, Field(min_length=1)] = Field(description="why the failure is accepted")
    ticket: Annotated[str, Field(min_length=1)] = Field(description="the ticket that tracks it (in JUnit and reports)")
    approved_by: Annotated[str, Field(min_length=1)] = Field(description="who approved the waiver")
    expires: IsoDate = Field(description="the last day the waiver applies (YYYY-MM-DD)")

    def matches(self, check_id: str) -> bool:
        return glob_to_regex(self.check).fullmatch(check_id) is not None


# Profile sections that hold named items (unique per section: the names are check ids):
# one per registered kind (opsproof.targets.names()), named after it.
ITEM_SECTIONS = names()


class ProfileBase(Strict):
    """One environment: its targets by kind, its defaults and its waivers."""

    # It names bundle folders and chain files: a file name's limit is 255 bytes, and a name is short.
    environment: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    description: str | None = None
    defaults: Defaults = Field(default_factory=Defaults)
    controls: ControlsOverride = Field(default_factory=dict)
    waivers: list[Waiver] = Field(default_factory=_no_items)
    notify: list[Notify] = Field(default_factory=_no_items, description="where state changes are sent")
    maintenance: list[MaintenanceWindow] = Field(default_factory=_no_items, description="planned windows")
    # Not `metrics:`: that is the section of the exporter-scraping kind.
    pushgateway: Pushgateway | None = Field(
        None, description="where each run pushes its Prometheus metrics (also --pushgateway URL), with its auth"
    )

    @cached_property
    def items_by_section(self) -> dict[str, dict[str, Item]]:
        return {section: {item.name: item for item in getattr(self, section)} for section in ITEM_SECTIONS}

    def targets(self, section: str) -> dict[str, Item]:
        """The items of one section by name (built once: checks look them up per test)."""
        return self.items_by_section[section]

    def timeout_of(self, item: Item) -> float:
        return item.timeout if item.timeout is not None else self.defaults.timeout


class _Sections(ProfileBase):
    """Every kind's section, typed `list[Any]` here: `profile_model` types those a document has.

    Typing all of them would import every kind's module (its models are built on import):
    ~0.1 s of a run's start-up, for the kinds a profile does not have.
    """

    @model_validator(mode="wrap")
    @classmethod
    def _typed(cls, data: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        # `Profile.model_validate(data)`: validated as the model typed for the document's sections.
        if cls is not Profile or not isinstance(data, dict):
            return handler(data)
        typed = profile_model(frozenset(data).intersection(ITEM_SECTIONS))
        return typed.model_validate(data, context=info.context)


if TYPE_CHECKING:

    class Profile(_Sections):
        """(For type checkers) one list of items per registered kind: `profile.http`, `profile.drills`."""

        def __getattr__(self, section: str) -> list[Any]: ...

else:
    # The sections come from the registry: adding a kind adds its section, and its JSON Schema.
    Profile = create_model(
        "Profile",
        __base__=_Sections,
        __module__=__name__,
        __doc__=ProfileBase.__doc__,
        **{name: (list[Any], Field(default_factory=_no_items)) for name in ITEM_SECTIONS},
    )


@cache
def profile_model(sections: frozenset[str]) -> type[Profile]:
    """`Profile` with the item sections SECTIONS typed by their kinds' models (the others stay `list[Any]`).

    Absent sections are always empty lists, so nothing is validated differently; but only
    the kinds in use are imported and have validators built (~0.15 s less at start-up for an
    http-only profile). A subclass, so `isinstance(profile, Profile)` holds and errors name `Profile`.
    """
    fields: dict[str, Any] = {}
    for name in sorted(sections):
        fields[name] = (GenericAlias(list, kind(name).target), Field(default_factory=_no_items))
    return create_model("Profile", __base__=Profile, __module__=__name__, __doc__=Profile.__doc__, **fields)


@dataclass(frozen=True)
class LoadedProfile:
    """A validated profile with where it came from and the secrets it holds.

    A dataclass, not a model: a model's field `profile: Profile` would build the validator of
    every kind's section on import, which `profile_model` exists to avoid.
    """

    profile: Profile
    path: Path
    sha256: str
    redactor: Redactor
    plain_vars: dict[str, str]


_REFERENCE = re.compile(r"\$\$\{|\$\{(vars\.)?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def parse_cli_vars(pairs: Iterable[str]) -> dict[str, str]:
    """The `--var NAME=VALUE` options of a command: the plain `${vars.NAME}` values of its profile."""
    found = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.isidentifier():
            raise ProfileError(f"--var {pair!r}: expected NAME=VALUE")
        found[name] = value
    return found


def resolve_profile_path(name_or_path: str, root: Path) -> Path:
    """`prod` -> ROOT/profiles/prod.yaml; anything that looks like a path is a path."""
    if "/" in name_or_path or name_or_path.endswith((".yaml", ".yml")):
        path = Path(name_or_path)
        return path if path.is_absolute() else Path.cwd() / path
    return root / "profiles" / f"{name_or_path}.yaml"


# A 5,000-item profile is ~1 MiB; anything far past that is a mistake (or /dev/zero), not a profile.
PROFILE_LIMIT = 16 * MIB


def read_profile_bytes(path: Path, shown: str) -> bytes:
    """A profile file's bytes: a regular file of at most PROFILE_LIMIT; ProfileError naming it otherwise."""
    try:
        return read_regular_file(path, PROFILE_LIMIT)
    except UnreadableFile as exc:
        if str(exc) == "no such file":
            raise ProfileError(f"{shown}: profile not found") from None
        raise ProfileError(f"{shown}: cannot read profile: {exc}") from None


def load_profile(
    path: Path,
    *,
    cli_vars: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    display_path: str | None = None,
) -> LoadedProfile:
    """Read, substitute and validate one profile file; raise ProfileError on any mistake."""
    shown = display_path or str(path)
    raw = read_profile_bytes(path, shown)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProfileError(f"{shown}: profile is not UTF-8 text") from None
    with collector_paused():  # see opsproof.heap: 1,000 items in 0.05 s instead of 0.14 s
        return _build(path, raw, text, shown, cli_vars, environ)


def _build(
    path: Path,
    raw: bytes,
    text: str,
    shown: str,
    cli_vars: Mapping[str, str] | None,
    environ: Mapping[str, str] | None,
) -> LoadedProfile:
    redactor = Redactor()
    plain_vars: dict[str, str] = {}
    values = Substitution(redactor, plain_vars, dict(cli_vars or {}), os.environ if environ is None else environ)
    data, document = _read_data(text, shown, values)
    try:
        sections = frozenset(data).intersection(ITEM_SECTIONS) if isinstance(data, dict) else frozenset()
        model = profile_model(sections)
        profile = model.model_validate(data, context={"profile_dir": str(path.parent)})
    except ValidationError as exc:
        # A bad value may have come from a ${SECRET}: never echo it.
        raise ProfileError(redactor.redact(_describe(exc, document.lines, shown))) from None
    for section in (*ITEM_SECTIONS, "maintenance", "notify"):
        seen: set[str | None] = {None}  # an unnamed notify destination is named by its position
        for index, item in enumerate(getattr(profile, section)):
            if section in ITEM_SECTIONS:  # a server may echo the header: base64 of user:password
                for user, password in item.basic_auth_pairs():
                    redactor.add_basic_auth(user, password)
            if item.name in seen and item.name is not None:
                line = document.lines.get((section, index, "name"), 1)
                message = f"{shown}:{line}: {section}[{index}].name: duplicate name {item.name!r}"
                raise ProfileError(redactor.redact(message))
            seen.add(item.name)
    _secrets_by_reference(profile, redactor, document, shown)
    backups = profile.targets("backups")
    for index, drill in enumerate(profile.drills):
        if drill.backup not in backups:
            known = ", ".join(sorted(backups)) or "none are declared"
            line = document.lines.get(("drills", index, "backup"), 1)
            message = f"{shown}:{line}: drills[{index}].backup: no backups item named {drill.backup!r} ({known})"
            raise ProfileError(redactor.redact(message))
        clash = drill.source_clash(profile.postgres)
        if clash is not None:
            lines = document.lines
            line = lines.get(("drills", index, "target", "dsn"), lines.get(("drills", index, "target"), 1))
            raise ProfileError(redactor.redact(f"{shown}:{line}: drills[{index}].target.dsn: {clash}"))
    return LoadedProfile(
        profile=profile,
        path=path.resolve(),
        sha256=hashlib.sha256(raw).hexdigest(),
        redactor=redactor,
        plain_vars=plain_vars,
    )


def _secrets_by_reference(profile: Profile, redactor: Redactor, document: Document | _Lines, shown: str) -> None:
    """A routing key, a Slack webhook URL, a push password or token must come from `${NAME}`.

    Written literally they would be committed with the profile and shown in every output.
    """
    where: list[tuple[tuple[Any, ...], str | None]] = []
    for index, rule in enumerate(profile.notify):
        if rule.pagerduty is not None:
            where.append((("notify", index, "pagerduty", "routing_key"), rule.pagerduty.routing_key))
        if rule.slack is not None:
            where.append((("notify", index, "slack", "webhook_url"), rule.slack.webhook_url))
    gateway = profile.pushgateway
    if gateway is not None:
        where += [
            (("pushgateway", "password"), gateway.password),
            (("pushgateway", "bearer_token"), gateway.bearer_token),
        ]
    for path, value in where:
        if value is not None and not redactor.hides(value):
            raise ProfileError(
                f"{shown}:{_line(path, document.lines)}: {_dotted(path)}: a secret; write it as ${{NAME}} "
                "(an environment variable), never in the profile"
            )


_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"


@dataclass
class Substitution:
    """What `${NAME}` and `${vars.NAME}` resolve to, and where what they resolved to is recorded."""

    redactor: Redactor
    plain_vars: dict[str, str]
    cli_vars: Mapping[str, str]
    env: Mapping[str, str]

    def apply(self, value: str, where: Callable[[], str]) -> str:
        """`value` with its references replaced; `where()` names the file, line and key for a message."""
        userinfo = _userinfo_span(value)
        leftover = _REFERENCE.sub("", value)
        if "${" in leftover:  # not a valid reference: refused rather than sent as a literal token
            start = leftover.index("${")
            end = leftover.find("}", start)
            bad = leftover[start : end + 1] if end != -1 else leftover[start : start + 40] + " (no closing })"
            raise ProfileError(
                f"{where()}: {bad!r} is not a valid reference; "
                "use ${NAME} (a secret), ${vars.NAME} or ${vars.NAME:-default}; write $${ for a literal ${"
            )

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            is_plain, name, default = match.group(1), match.group(2), match.group(3)
            if is_plain:
                found = self.cli_vars.get(name, self.env.get(name, default))
                if found is None:
                    raise ProfileError(
                        f"{where()}: ${{vars.{name}}} is not set; pass --var {name}=VALUE or set the environment "
                        f"variable {name}"
                    )
                self.plain_vars[name] = found
                return found
            if default is not None:
                raise ProfileError(
                    f"{where()}: secrets take no default (${{{name}:-...}}); set the environment variable"
                )
            secret = self.env.get(name)
            if secret is None:
                raise ProfileError(f"{where()}: environment variable {name} is not set (referenced as ${{{name}}})")
            self.redactor.add(name, secret)
            if match.start() in userinfo and _breaks_userinfo(secret):
                # `http://ops:${PW}@host`: a password holding @ / # ? would move the host (a DNS query for part
                # of it) and a stray % makes the URL malformed (a message quoting it). A secret already
                # URL-encoded, as the README asks, is used as it is.
                return quote(secret, safe="")
            return secret

        return _REFERENCE.sub(replace, value)


def _userinfo_span(template: str) -> range:
    """Where a URL template's `user:password` part is (an empty range when it is not a URL with one)."""
    scheme = re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", template)
    if scheme is None:
        return range(0)
    start = scheme.end()
    end = re.search(r"[/?#]|$", template[start:])
    authority = template[start : start + (end.start() if end else 0)]
    return range(start, start + max(authority.rfind("@"), 0))


def _breaks_userinfo(secret: str) -> bool:
    """A value a URL cannot carry as it is in its userinfo: @ / # ? \\ or a space, or a % that starts no escape."""
    return bool(re.search(r"[@/#?\\\s]|%(?![0-9A-Fa-f]{2})", secret))


@dataclass
class Document:
    """A profile's YAML, parsed once; `data()` builds its values in one walk over the nodes.

    One walk constructs each value, substitutes references and refuses duplicate keys
    (PyYAML would keep the last silently). The line of each key is worked out only
    when a message needs one: over 1,000 items the separate passes cost ~50 ms before
    the first probe could start.
    """

    loader: Any
    node: yaml.Node | None
    shown: str

    def data(self, values: Substitution, only: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The top-level mapping (or `only` these keys of it), substituted; ProfileError otherwise."""
        if not isinstance(self.node, yaml.MappingNode):
            raise ProfileError(f"{self.shown}: a profile is a mapping with at least `environment:`")
        return self._mapping(self.node, (), values, only, set())

    @cached_property
    def lines(self) -> dict[tuple[Any, ...], int]:
        """The line of every key and item, by path (`("http", 2, "url")`)."""
        lines: dict[tuple[Any, ...], int] = {}
        if self.node is not None:
            _record_lines(self.node, (), lines)
        return lines

    def _value(self, node: yaml.Node, path: tuple[Any, ...], values: Substitution, open_: set[int]) -> Any:
        if isinstance(node, yaml.ScalarNode):
            if node.tag != _STR:
                return self._construct(node, path)
            text: str = node.value
            if "$" in text:
                return values.apply(text, lambda: f"{self.shown}:{node.start_mark.line + 1}: {_dotted(path)}")
            return text
        if len(path) > MAX_DEPTH:  # indented blocks, which yaml_limits does not look for: n levels cost n²/2 bytes
            line = node.start_mark.line + 1
            raise ProfileError(f"{self.shown}:{line}: {_dotted(path[:3])}...: nested more than {MAX_DEPTH} levels deep")
        if id(node) in open_:  # an alias inside its own anchor: it would never end
            raise ProfileError(f"{self.shown}:{node.start_mark.line + 1}: {_dotted(path)}: a recursive alias")
        if isinstance(node, yaml.MappingNode) and node.tag == _MAP:
            return self._mapping(node, path, values, None, open_)
        if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
            open_.add(id(node))
            try:
                return [self._value(child, (*path, index), values, open_) for index, child in enumerate(node.value)]
            finally:
                open_.discard(id(node))
        return self._construct(node, path)  # another tag (!!set, !!binary...): PyYAML's reading, or its error

    def _mapping(
        self,
        node: yaml.MappingNode,
        path: tuple[Any, ...],
        values: Substitution,
        only: tuple[str, ...] | None,
        open_: set[int],
    ) -> dict[str, Any]:
        merged = 0  # `<<: *defaults` merged as PyYAML does: first, and overridden by the keys written
        if any(key.tag == _MERGE for key, _ in node.value):
            written = sum(key.tag != _MERGE for key, _ in node.value)
            try:
                self.loader.flatten_mapping(node)
            except yaml.YAMLError as exc:  # `<<: 5`: a merge takes a mapping or a list of them
                line = (getattr(exc, "problem_mark", None) or node.start_mark).line + 1
                problem = getattr(exc, "problem", None) or str(exc)
                raise ProfileError(f"{self.shown}:{line}: {_dotted(path)}: not valid YAML: {problem}") from None
            merged = len(node.value) - written
        open_.add(id(node))
        try:
            built: dict[Any, Any] = {}
            written_keys: set[Any] = set()
            for position, (key_node, value_node) in enumerate(node.value):
                if not isinstance(key_node, yaml.ScalarNode):
                    line = key_node.start_mark.line + 1
                    raise ProfileError(f"{self.shown}:{line}: {_dotted(path)}: a key must be a plain value")
                key = key_node.value if key_node.tag == _STR else self._construct(key_node, path)
                if position >= merged and key in written_keys:
                    line = key_node.start_mark.line + 1
                    raise ProfileError(f"{self.shown}:{line}: {_dotted((*path, key))}: duplicate key")
                if position >= merged:
                    written_keys.add(key)
                if only is None or key in only:  # the others are not read (they may need secrets)
                    built[key] = self._value(value_node, (*path, key), values, open_)
            return built
        finally:
            open_.discard(id(node))

    def _construct(self, node: yaml.Node, path: tuple[Any, ...]) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            raise ProfileError(f"{self.shown}:{node.start_mark.line + 1}: not valid YAML: {problem}") from None
        except (ValueError, TypeError, OverflowError) as exc:  # `!!int xyz`: PyYAML's int() fails bare
            line = node.start_mark.line + 1
            problem = f"{node.tag} {node.value!r}: {exc}"
            raise ProfileError(f"{self.shown}:{line}: {_dotted(path)}: not valid YAML: {problem}") from None


class _Lines:
    """The line of every key, for messages, worked out only when one is needed (by reading the text again)."""

    def __init__(self, text: str, shown: str) -> None:
        self._text = text
        self._shown = shown

    @cached_property
    def lines(self) -> dict[tuple[Any, ...], int]:
        return read_document(self._text, self._shown).lines


def _read_data(text: str, shown: str, values: Substitution) -> tuple[dict[str, Any], Document | _Lines]:
    """The profile's values, and where to find the line of each key for a message.

    From libyaml's events when the document is a plain one (most are; see
    opsproof.model.yaml_plain), else from the node walk, which also names every mistake.
    """
    plain = read_plain(text)
    if plain is None:
        document = read_document(text, shown)  # names the mistake if there is one
        return document.data(values), document
    data = plain.data
    for path, line in plain.references:  # in the document's order, as the node walk substitutes
        holder: Any = data
        for part in path[:-1]:
            holder = holder[part]
        holder[path[-1]] = values.apply(holder[path[-1]], partial(_where, shown, line, path))
    return data, _Lines(text, shown)


def _where(shown: str, line: int, path: tuple[Any, ...]) -> str:
    return f"{shown}:{line}: {_dotted(path)}"


def read_document(text: str, shown: str) -> Document:
    """Parse one profile's YAML (libyaml where built in); ProfileError names the line of a syntax error."""
    loader = ProfileLoader(text)
    try:
        check_nesting(text, ProfileLoader)  # before libyaml composes it: a deep document crashes the composer
        node = loader.get_single_node()
        if may_have_aliases(text):
            check_expansion(node)
    except TooLarge as exc:
        raise ProfileError(f"{shown}:{exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProfileError(f"{shown}{where}: not valid YAML: {problem}") from None
    finally:
        loader.dispose()
    return Document(loader, node, shown)


def _record_lines(node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            _record_lines(value_node, (*path, key), lines)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, child in enumerate(node.value):
            _record_lines(child, (*path, index), lines)


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
    schema = profile_model(frozenset(ITEM_SECTIONS)).model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "opsproof profile"
    return schema
