"""Profile model of `redis` items: a Redis server checked with read commands only.

The URL is parsed here, at load, so a malformed one is a usage error naming its line,
and the probe connects with exactly the parts parsed (never with redis-py's own URL
parser, whose query string could override the item's timeout)::

    >>> parse_redis_url("redis://:pw@cache:6380/2").shown
    'redis://cache:6380/2'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, Literal, get_args
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import (
    BeforeValidator,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

from opsproof.model.fields import (
    AspectThreshold,
    Duration,
    ExistingFile,
    Item,
    Name,
    OwnCadence,
    OwnSeverity,
    Percent,
    Strict,
    Threshold,
    check_order,
    default_threshold,
)
from opsproof.model.kind import Kind
from opsproof.model.trends import CountIncrease, Trend

EvictionPolicy = Literal[
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
]
EVICTION_POLICIES: tuple[str, ...] = get_args(EvictionPolicy)
DEFAULT_PORT = 6379
QueueLength = Annotated[StrictInt, Field(ge=0)]


class QueueLimits(AspectThreshold[QueueLength]):
    """`{warn, fail}` on a queue's length, and/or `trend:` of its length over the history; its own severity, cadence."""

    trend: Trend[QueueLength] | None = Field(
        None, description="{limit, window, full_in}: when the length's fitted line reaches `limit` (docs/trends.md)"
    )

    @model_validator(mode="after")
    def _judges_something(self) -> QueueLimits:  # replaces Threshold's: a trend alone judges something
        if self.warn is None and self.fail is None and self.trend is None:
            raise ValueError("an empty threshold {} judges nothing: give warn, fail or both, or trend:")
        return self


class RejectedConnections(Strict):
    """INFO's rejected_connections (cumulative, since the server started): judged on its growth between runs."""

    increase: CountIncrease = Field(description="{warn, fail} on connections rejected since the previous run")


@dataclass(frozen=True)
class RedisAddress:
    """The parts of a redis://, rediss:// or unix:// URL the probe connects with."""

    scheme: Literal["redis", "rediss", "unix"]
    host: str | None
    port: int | None
    socket_path: str | None
    db: int
    username: str | None
    password: str | None

    @property
    def tls(self) -> bool:
        return self.scheme == "rediss"

    @property
    def shown(self) -> str:
        """The URL without its password: what reports show."""
        user = f"{self.username}@" if self.username else ""
        if self.scheme == "unix":
            return f"unix://{user}{self.socket_path}" + (f"?db={self.db}" if self.db else "")
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{self.scheme}://{user}{host}:{self.port}/{self.db}"


def parse_redis_url(url: str) -> RedisAddress:
    """Split a Redis URL; raise ValueError (never quoting the password) when it is malformed.

    The userinfo ends at the last `@`, so a password substituted from `${REDIS_PASSWORD}`
    may hold `/`, `@`, `?` or `#` without URL-encoding; percent-encoded ones are decoded.
    """
    match = re.fullmatch(r"(rediss?|unix)://(.*)", url, re.DOTALL)
    if match is None:
        raise ValueError("URL needs a redis://, rediss:// or unix:// scheme")
    scheme: Literal["redis", "rediss", "unix"] = match.group(1)  # type: ignore[assignment]
    userinfo, at, location = match.group(2).rpartition("@")
    username, password = _credentials(userinfo) if at else (None, None)
    location, _, query = location.partition("?")
    if "#" in location or "#" in query:
        raise ValueError("URL has a #fragment; Redis URLs have none")
    query_db = _query_db(query)
    if scheme == "unix":
        if not location.startswith("/"):
            raise ValueError("unix:// URL needs an absolute socket path: unix:///run/redis/redis.sock")
        address = RedisAddress(scheme, None, None, location, query_db or 0, username, password)
        return address
    parts = urlsplit("//" + location)
    if not parts.hostname:
        raise ValueError(f"URL has no host: {scheme}://host:port/db")
    try:
        port = DEFAULT_PORT if parts.port is None else parts.port
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise ValueError("URL port must be a number from 1 to 65535")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"URL path must be a database number (/0, /1...), not /{path}")
    if path and query_db is not None and int(path) != query_db:
        raise ValueError("URL names two databases (path and ?db=)")
    db = int(path) if path else (query_db or 0)
    return RedisAddress(scheme, parts.hostname, port, None, db, username, password)


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    username, colon, password = userinfo.partition(":")
    return (unquote(username) or None, unquote(password) if colon else None)


def _query_db(query: str) -> int | None:
    # Only db: timeouts and TLS come from the item, and redis-py would let a query
    # string override them.
    if not query:
        return None
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise ValueError("URL query string is malformed") from None
    db: int | None = None
    for key, value in pairs:
        if key != "db":
            raise ValueError(f"URL query parameter {key!r} is not supported; only ?db=N (timeouts come from timeout:)")
        if not value.isdigit():
            raise ValueError("URL ?db= must be a database number")
        db = int(value)
    return db


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class Persistence(Strict):
    """RDB snapshots and the append-only file; a failed last save or write always fails."""

    rdb_max_age: Threshold[Duration] | None = Field(
        None, description="age of the last successful RDB save (server clock), e.g. {warn: 2h, fail: 26h}"
    )
    aof: StrictBool | None = Field(
        None, description="true: the append-only file must be on; its last write and rewrite must be ok"
    )
    severity: OwnSeverity = None
    cadence: OwnCadence = None

    @field_validator("rdb_max_age")
    @classmethod
    def _rdb_order(cls, value: Threshold[float] | None) -> Threshold[float] | None:
        check_order(value, lower_is_worse=False)
        return value


class RedisReplication(Strict):
    """The replication link: a replica's link to its master, or a master's replicas."""

    role: Literal["master", "replica"] | None = Field(None, description="the role this server must have")
    min_replicas: StrictInt | None = Field(None, ge=0, description="replicas online (state=online) at least")
    link_age: Threshold[Duration] = Field(
        # A master pings its replicas every 10s (repl-ping-replica-period) and a replica
        # drops the link after 60s of silence (repl-timeout): warn after 3 missed pings.
        default_factory=default_threshold(warn="30s", fail="1m"),
        validate_default=True,
        description="a replica: seconds since the last I/O with its master; "
        "a master: each online replica's lag (seconds since its last ack)",
    )
    severity: OwnSeverity = None
    cadence: OwnCadence = None

    @field_validator("link_age")
    @classmethod
    def _link_order(cls, value: Threshold[float]) -> Threshold[float]:
        check_order(value, lower_is_worse=False)
        return value


class RedisTarget(Item):
    """A Redis server: memory, clients, queues, hit ratio, persistence and replication."""

    url: Annotated[
        str,
        Field(
            description="redis://[[user]:password@]host[:port][/db], rediss:// for TLS, "
            "or unix://[[user]:password@]/path/to.sock[?db=N]"
        ),
    ]
    ca_file: ExistingFile | None = Field(None, description="extra trust anchors (PEM) for rediss://")
    memory: AspectThreshold[Percent] = Field(
        default_factory=default_threshold(warn="80%", fail="95%"),
        validate_default=True,
        description="used_memory as a share of maxmemory (an unset maxmemory is reported, not judged)",
    )
    eviction_policy: Annotated[list[EvictionPolicy] | None, BeforeValidator(_one_or_many)] = Field(
        None, description="the maxmemory-policy expected (one or a list)"
    )
    clients: AspectThreshold[Percent] = Field(
        default_factory=default_threshold(warn="80%", fail="95%"),
        validate_default=True,
        description="connected clients as a share of maxclients",
    )
    hit_ratio: AspectThreshold[Percent] | None = Field(
        None,
        description="keyspace hits / lookups since the server started; lower is worse, e.g. {warn: 90%, fail: 80%}",
    )
    queues: dict[Name, QueueLimits] = Field(
        default_factory=dict,
        description="key -> {warn, fail} on its length (list, stream, sorted set or set), and/or `trend:` of the "
        "length, with its own severity and cadence if given; a missing key has length 0",
    )
    rejected_connections: RejectedConnections | None = Field(
        None, description="`{increase: {warn: 1, fail: 100}}`: connections rejected (maxclients) since the previous run"
    )
    persistence: Persistence | None = Field(None, description="RDB and AOF expectations; absent: not checked")
    replication: RedisReplication | None = Field(None, description="role and link expectations; absent: not checked")

    @field_validator("url")
    @classmethod
    def _valid_url(cls, url: str) -> str:
        parse_redis_url(url)
        return url

    @field_validator("memory", "clients")
    @classmethod
    def _higher_is_worse(cls, value: Threshold[float]) -> Threshold[float]:
        check_order(value, lower_is_worse=False)
        return value

    @field_validator("hit_ratio")
    @classmethod
    def _lower_is_worse(cls, value: Threshold[float] | None) -> Threshold[float] | None:
        check_order(value, lower_is_worse=True)
        return value

    @field_validator("queues")
    @classmethod
    def _queue_order(cls, value: dict[str, QueueLimits]) -> dict[str, QueueLimits]:
        for threshold in value.values():
            check_order(threshold, lower_is_worse=False)
        return value

    @model_validator(mode="after")
    def _ca_file_needs_tls(self) -> RedisTarget:
        if self.ca_file is not None and not self.address.tls:
            raise ValueError("ca_file is only used with rediss:// (TLS) URLs")
        return self

    @cached_property
    def address(self) -> RedisAddress:
        """The parsed URL (validated at load)."""
        return parse_redis_url(self.url)


KIND = Kind(
    name="redis",
    target=RedisTarget,
    probe="opsproof.probes.redis",
    checks="checks/infra/test_redis.py",
    cadence="daily",
    areas=("infra",),
    controls={
        "redis": ("SOC2:CC7.1", "SOC2:A1.1", "ISO27001:A.8.6", "ISO27001:A.8.16", "SOX-ITGC:OPS"),
        "redis.persistence": ("SOC2:CC7.1", "SOC2:A1.2", "ISO27001:A.8.13", "SOX-ITGC:OPS"),
        "redis.replication": ("SOC2:CC7.1", "SOC2:A1.2", "ISO27001:A.8.14", "SOX-ITGC:OPS"),
    },
)
