"""PostgreSQL's answers in words and JSON: connection strings without passwords, errors, values.

Everything that leaves the postgres probe passes through here, so no DSN password, server
error text or oversized value reaches the evidence as it came.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field

from opsproof.redaction import Redactor, mask
from opsproof.targets.postgres import PostgresTarget

APPLICATION_NAME = "opsproof"
QUERY_TEXT_CHARS = 200
VALUE_CHARS = 10_000  # longer values are cut (and flagged) before they reach the evidence
# Server errors that say the database lacks what the query names: the target's state
# (an unmigrated schema, a restore into the wrong database), so the check is `failed`.
MISSING_OBJECT = {"42P01": "table", "42703": "column", "3F000": "schema"}
# Logins the server refused: a credential or grant to fix, not the target's state (`error`).
_LOGIN_REJECTED = re.compile(
    r"password authentication failed|no password supplied|authentication failed|no pg_hba\.conf entry|"
    r"role \".*\" does not exist|is not permitted to log in|permission denied for database|"
    r"password is required|server requested .* authentication|SCRAM",
    re.IGNORECASE,
)
_PASSWORD_KEYWORD = re.compile(r"(?<!\S)password\s*=\s*(?:'(?:[^'\\]|\\.)*'|\S+)")
_PASSWORD_LITERAL = re.compile(r"(password\s+)'(?:[^']|'')*'", re.IGNORECASE)


class _Redacted(BaseModel):
    """Nested facts: redacted like `Facts` itself (the parent's validator does not look inside models)."""

    model_config = ConfigDict(extra="forbid")



class SectionError(_Redacted):
    """Why one section of the session (or one custom query) produced no facts."""

    message: str
    sqlstate: str | None = None
    timed_out: bool = False
    missing_object: bool = Field(False, description="the server says a table, column or schema does not exist")
    session_lost: bool = Field(False, description="the session ended or stopped answering: later sections did not run")


class QueryResult(_Redacted):
    """What one custom query returned. `value` is the first column of the first row, JSON-friendly."""

    sql: str
    columns: list[str] = Field(default_factory=list)
    value_type: str | None = None
    value: Any = None
    value_text: str | None = Field(None, description="the value as text: what `matches` and text `equals` compare")
    value_truncated: bool = False
    row_count: int | None = None
    sample: list[list[Any]] = Field(default_factory=list)
    elapsed_s: float = 0.0
    timeout_s: float = 0.0
    error: SectionError | None = None


# -- connection strings ---------------------------------------------------------------------


def dsn_without_password(dsn: str) -> str:
    """The DSN as written, minus any password (URI user-info, `?password=`, `password=` keyword)."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hosts = netloc.rpartition("@")
            netloc = f"{userinfo.split(':', 1)[0]}@{hosts}"
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"])
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    # Keyword form: cut `password=...` (quoted or not) and keep the rest as written.
    return " ".join(_PASSWORD_KEYWORD.sub(" ", dsn).split())


def _password_of(dsn: str) -> str | None:
    from psycopg.conninfo import conninfo_to_dict

    try:
        password = conninfo_to_dict(dsn).get("password")
    except Exception:  # the model validated the DSN; a parse failure here has nothing to hide
        return None
    return str(password) if password else None


def scrub_postgres_error(text: str, target: PostgresTarget, redactor: Redactor) -> str:
    """A driver message without the item's password, even one written literally (not as ${VAR})."""
    text = redactor.redact(text)  # a ${SECRET} shows as its reference; a literal password as ***
    for password in (_password_of(target.dsn), target.password):
        text = mask(text, password)
    return text


def connect_params(target: PostgresTarget, timeout: float) -> dict[str, Any]:
    """Keyword parameters that override the DSN: who we are, how long we wait, read-only."""
    from psycopg.conninfo import conninfo_to_dict

    timeout_ms = max(1, round(timeout * 1000))
    ours = (
        f"-c default_transaction_read_only=on -c statement_timeout={timeout_ms} "
        # A client that dies mid-transaction must not hold a snapshot (and vacuum) for long.
        f"-c idle_in_transaction_session_timeout={max(timeout_ms * 2, 10_000)}"
    )
    given = conninfo_to_dict(target.dsn).get("options")
    password = {"password": target.password} if target.password is not None else {}
    return {
        **password,
        "application_name": APPLICATION_NAME,
        # libpq counts whole seconds, at least 2; asyncio.timeout enforces the exact bound.
        "connect_timeout": max(2, math.ceil(timeout)),
        "options": f"{given} {ours}" if given else ours,
    }


# -- describing errors ----------------------------------------------------------------------


def describe_connect_error(exc: BaseException) -> tuple[str, bool]:
    """(what went wrong in words, whether the server refused the login)."""
    text = str(exc).strip()
    # libpq: 'connection failed: connection to server at "h" (1.2.3.4), port 5 failed: FATAL:  why'
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else type(exc).__name__
    server_said = re.search(r"(?:FATAL|ERROR):\s+(.*)", text)
    if server_said:
        reason = server_said.group(1).strip()
        return reason, bool(_LOGIN_REJECTED.search(reason))
    where = re.search(r'connection to server (?:at "([^"]+)"(?: \([^)]*\))?, port (\d+)|on socket "([^"]+)")', first)
    place = (f"{where.group(1)}:{where.group(2)}" if where.group(1) else where.group(3)) if where else None
    cause = first.rsplit("failed:", 1)[-1].strip() if "failed:" in first else first
    unresolved = re.search(r"""(?:could not translate host name "|failed to resolve host ')([^"']+)""", text)
    if unresolved:
        why = re.sub(r"^\[Errno [^]]*\]\s*", "", first.rsplit(": ", 1)[-1])
        return f"cannot resolve {unresolved.group(1)}: {why[:1].lower()}{why[1:]}", False
    if _LOGIN_REJECTED.search(cause):
        return cause, True
    return (f"cannot connect to {place}: {cause[:1].lower()}{cause[1:]}" if place else cause), False


def describe_query_error(exc: Exception, timeout: float) -> SectionError:
    """A server error as facts: timeouts and missing objects are the target's state, the rest is not."""
    import psycopg

    sqlstate = getattr(exc, "sqlstate", None)
    diag = getattr(exc, "diag", None)
    primary = (getattr(diag, "message_primary", None) or str(exc).strip().splitlines()[0]) if str(exc) else ""
    if sqlstate == "57014":  # query_canceled: our statement_timeout
        return SectionError(
            message=f"timed out after {timeout:g}s (statement_timeout)", sqlstate=sqlstate, timed_out=True
        )
    if sqlstate == "25006":  # read_only_sql_transaction: something in the query tried to write
        return SectionError(message=f"refused by the read-only session: {primary}", sqlstate=sqlstate)
    if (isinstance(exc, psycopg.OperationalError) and sqlstate is None) or (sqlstate or "").startswith("57P"):
        return SectionError(message=f"the session ended: {primary or type(exc).__name__}", session_lost=True)
    return SectionError(
        message=primary or type(exc).__name__, sqlstate=sqlstate, missing_object=sqlstate in MISSING_OBJECT
    )


# -- turning values into JSON-friendly facts ------------------------------------------------


def json_value(value: Any) -> Any:
    """A result value as JSON: numbers stay numbers, intervals become seconds, the rest text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def value_text(value: Any) -> str | None:
    """How the value reads as text: PostgreSQL's spelling for booleans, ISO for times."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (list, dict, tuple)):
        import json

        return json.dumps(json_value(value))
    shown = json_value(value)
    return shown if isinstance(shown, str) else str(value)


def cut_long(value: Any) -> tuple[Any, bool]:
    if isinstance(value, str) and len(value) > VALUE_CHARS:
        return value[:VALUE_CHARS], True
    return value, False


def query_text(text: str | None) -> str | None:
    """Another session's query as evidence: passwords in it masked, cut to a line's length."""
    if text is None:
        return None
    text = _PASSWORD_LITERAL.sub(r"\1'***'", " ".join(text.split()))
    return text if len(text) <= QUERY_TEXT_CHARS else text[: QUERY_TEXT_CHARS - 3] + "..."
