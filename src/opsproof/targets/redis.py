"""Profile model of `redis` items: a Redis server checked with read commands only."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BeforeValidator, Field, StrictBool, StrictInt, ValidationInfo, field_validator

from opsproof.fields import Duration, Item, Name, Percent, Strict, Threshold, default_threshold, existing_file

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


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class Persistence(Strict):
    """RDB snapshots and the append-only file, where the item asks for them."""

    rdb_max_age: Threshold[Duration] | None = Field(None, description="age of the last successful RDB save")
    aof: StrictBool | None = Field(None, description="true: AOF must be on and its last write ok")


class RedisReplication(Strict):
    """The replication link: a replica's link to its master, or a master's replicas."""

    role: Literal["master", "replica"] | None = Field(None, description="the role this server must have")
    min_replicas: StrictInt | None = Field(None, ge=0, description="on a master: connected replicas expected")
    link_age: Threshold[Duration] = Field(
        default_factory=default_threshold(warn="10s", fail="1m"),
        validate_default=True,
        description="on a replica: seconds since the last I/O",
    )


class RedisTarget(Item):
    """A Redis server: memory, clients, queues, hit ratio, persistence and replication."""

    url: Annotated[str, Field(description="redis://[:password@]host:port/db, rediss:// for TLS, or unix://")]
    ca_file: Path | None = Field(None, description="extra trust anchors (PEM) for rediss://")
    memory: Threshold[Percent] = Field(
        default_factory=default_threshold(warn="80%", fail="95%"),
        validate_default=True,
        description="used_memory as a share of maxmemory",
    )
    eviction_policy: Annotated[list[EvictionPolicy] | None, BeforeValidator(_one_or_many)] = Field(
        None, description="the maxmemory-policy expected (one or a list)"
    )
    clients: Threshold[Percent] = Field(
        default_factory=default_threshold(warn="80%", fail="95%"),
        validate_default=True,
        description="connected clients as a share of maxclients",
    )
    hit_ratio: Threshold[Percent] | None = Field(None, description="keyspace hits / lookups; lower is worse")
    queues: dict[Name, Threshold[StrictInt]] = Field(
        default_factory=dict, description="key -> {warn, fail} on its length (list, stream, sorted set, set)"
    )
    persistence: Persistence | None = None
    replication: RedisReplication | None = None

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, url: str) -> str:
        if not re.match(r"^(rediss?|unix)://", url):
            raise ValueError("URL needs a redis://, rediss:// or unix:// scheme")
        return url

    @field_validator("ca_file")
    @classmethod
    def _ca_file_exists(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        return existing_file(path, info)
