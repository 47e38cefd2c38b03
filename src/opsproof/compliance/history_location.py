"""Where a run's history lives, named before anything is opened: a SQLite file or a PostgreSQL DSN.

Apart from `opsproof.compliance.history` so that a run can say where its history is (at start,
to refuse a bad `--history-dsn` with exit 4) without loading the store's code, which the run
first needs once its checks are running.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from opsproof.compliance import ComplianceError

SQLITE_NAME = "history.sqlite"
DSN_VARIABLE = "OPSPROOF_HISTORY_DSN"


@dataclass(frozen=True)
class Location:
    """Where a history lives: a SQLite file or a PostgreSQL DSN. `shown` never holds a password."""

    kind: str  # "sqlite" or "postgres"
    target: str  # the file path, or the DSN
    shown: str

    @property
    def password(self) -> str | None:
        """The DSN's password, in either form (`postgresql://u:pw@h/db` or `host=h password=pw`), as libpq reads it."""
        if self.kind != "postgres":
            return None
        return conninfo_parts(self.target).get("password") or None


def conninfo_parts(dsn: str) -> dict[str, str]:
    """A DSN's keywords as libpq parses them; {} when it does not parse."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        return {key: str(value) for key, value in conninfo_to_dict(dsn).items()}
    except ProgrammingError:
        return {}


def _keyword_shown(dsn: str) -> str:
    """A libpq `key=value` DSN fit to show, rebuilt from its parts with the password as ***.

    Rebuilt rather than edited with a pattern: a quoted password (`password='a b'`) has spaces.
    """
    from psycopg.conninfo import make_conninfo

    parts = conninfo_parts(dsn)
    if not parts:
        return "(unparsable DSN)"
    if "password" in parts:
        parts["password"] = "***"

    def written_at(key: str) -> int:  # libpq gives its own order; show the user's
        found = re.search(rf"(?:^|\s){key}\s*=", dsn)
        return found.start() if found else len(dsn)

    return make_conninfo(**{key: parts[key] for key in sorted(parts, key=written_at)})


def locate(report_dir: Path, dsn: str | None) -> Location:
    """The history of a report dir: `--history-dsn` (or $OPSPROOF_HISTORY_DSN), else its SQLite file."""
    if dsn is None or not dsn.strip():
        path = report_dir / SQLITE_NAME
        return Location("sqlite", str(path), str(path))
    dsn = dsn.strip()
    if dsn.startswith("sqlite:///"):
        path = Path(dsn.removeprefix("sqlite://"))
        return Location("sqlite", str(path), str(path))
    if dsn.startswith(("postgresql://", "postgres://")):
        return Location("postgres", dsn, without_password(dsn))
    if re.search(r"(^|\s)(host|dbname|user)=", dsn):  # libpq key=value form
        return Location("postgres", dsn, _keyword_shown(dsn))
    raise ComplianceError(
        f"--history-dsn {without_password(dsn)!r}: expected postgresql://user@host/db, "
        "a libpq 'host=... dbname=...' string, or sqlite:///path/history.sqlite"
    )


def without_password(dsn: str) -> str:
    """A DSN fit to show: the password (if any) replaced by ***."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "(unparsable DSN)"
    if parts.password is None:
        return dsn
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))
