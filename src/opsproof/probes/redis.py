"""Redis servers: one connection per item, read commands only, every item concurrently.

Per item, two round trips: `PING`, `INFO` (its default sections: server, clients,
memory, persistence, stats, replication, keyspace) and `TYPE` of each queue key in
one pipeline, then one length command per queue key that exists (`LLEN`, `XLEN`,
`ZCARD`, `SCARD`). `CONFIG GET` is sent only to a server whose INFO lacks
maxclients, maxmemory or maxmemory-policy (before 6.2), and a refusal is reported,
not fatal. Nothing else is sent. redis-py 8 would, by default, open with RESP3
(`HELLO 3`, `CLIENT MAINT_NOTIFICATIONS`) and `CLIENT SETINFO LIB-NAME/LIB-VER`: on
servers before 7.2 the last three are error replies that land in the server's
errorstats (an error-rate alert the checks would cause), and on any server they
change the connection's state. So the probe speaks RESP2 with no driver info, and
the server sees `AUTH` (and `SELECT`) on connect when the URL asks for them, then
the commands of `READ_COMMANDS`, none of them flagged `write`.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from pydantic import Field

from opsproof.probes import Facts, ProbeContext, ProbeKind, describe_connect_error, each_as_done
from opsproof.redaction import Redactor, mask
from opsproof.targets.redis import RedisAddress, RedisTarget

# Every command the probe may send (tests/kinds/test_redis_checks.py holds the server to it).
READ_COMMANDS = frozenset({"auth", "select", "ping", "info", "config|get", "type", "llen", "xlen", "zcard", "scard"})
LENGTH_COMMANDS = {"list": "LLEN", "stream": "XLEN", "zset": "ZCARD", "set": "SCARD"}
# INFO has carried these since Redis 6.2 (maxclients) and 4.0 (the memory ones).
CONFIG_FALLBACK = {"maxclients": "maxclients", "maxmemory": "maxmemory", "maxmemory_policy": "maxmemory-policy"}


class RedisFacts(Facts):
    url: str = Field(description="the URL without its password")
    denied: str | None = Field(None, description="the server refused our credentials or a command: checks cannot run")
    ping_refused: str | None = Field(None, description="PING's error reply (MISCONF: a failed save stops writes)")
    version: str | None = None
    mode: str | None = Field(None, description="standalone, cluster or sentinel")
    role: str | None = Field(None, description="master or replica")
    uptime_s: int | None = None
    server_time: float | None = Field(None, description="the server's clock (POSIX seconds) when INFO ran")
    # memory
    used_memory: int | None = None
    used_memory_peak: int | None = None
    maxmemory: int | None = Field(None, description="0: no limit")
    maxmemory_policy: str | None = None
    evicted_keys: int | None = None
    # clients
    connected_clients: int | None = Field(None, description="includes this probe's own connection")
    maxclients: int | None = None
    blocked_clients: int | None = None
    rejected_connections: int | None = Field(None, description="since the server started (or CONFIG RESETSTAT)")
    # stats
    keyspace_hits: int | None = None
    keyspace_misses: int | None = None
    # persistence
    rdb_last_save_time: int | None = Field(None, description="last successful save, or the server's start")
    rdb_last_bgsave_status: str | None = None
    rdb_bgsave_since_start: bool | None = Field(None, description="a background save ran since the server started")
    rdb_changes_since_last_save: int | None = None
    rdb_bgsave_in_progress: bool | None = None
    aof_enabled: bool | None = None
    aof_last_write_status: str | None = None
    aof_last_bgrewrite_status: str | None = None
    aof_rewrite_in_progress: bool | None = None
    # replication
    connected_replicas: int | None = None
    replicas: list[dict[str, Any]] = Field(default_factory=list, description="a master's replicas: address, state, lag")
    master: str | None = Field(None, description="a replica's master, host:port")
    master_link_status: str | None = None
    master_last_io_s: int | None = None
    master_link_down_s: int | None = None
    master_sync_in_progress: bool | None = None
    # queues: key -> {"type": "list", "length": 12} | {"type": "none", "length": 0} | {"error": "..."}
    queues: dict[str, dict[str, Any]] = Field(default_factory=dict)
    config_get: list[str] = Field(default_factory=list, description="values read with CONFIG GET, missing from INFO")
    config_error: str | None = Field(None, description="why CONFIG GET could not fill a value INFO lacked")

    def observed(self) -> dict[str, Any]:
        # What every redis check's record carries; each check adds the measures it judged.
        shown: dict[str, Any] = {"url": self.url, "reached": self.reached}
        for name in ("timed_out", "failure", "denied", "ping_refused", "version", "role", "mode"):
            value = getattr(self, name)
            if value:
                shown[name] = value
        shown["elapsed_s"] = round(self.elapsed_s, 4)
        return shown

    @property
    def role_word(self) -> str:
        return self.role or "unknown role"


def client_options(address: RedisAddress, target: RedisTarget, timeout: float) -> dict[str, Any]:
    """redis.asyncio.Redis keyword arguments for one item: one connection, no retries, no extras."""
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    options: dict[str, Any] = {
        "db": address.db,
        "username": address.username,
        "password": address.password,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        # A retry would double a black hole's cost and hide a flapping server: one try.
        "retry": Retry(NoBackoff(), 0),
        "max_connections": 1,
        "decode_responses": True,
        "encoding_errors": "replace",
        "protocol": 2,
        "driver_info": None,
        "health_check_interval": 0,
    }
    if address.scheme == "unix":
        options["unix_socket_path"] = address.socket_path
    else:
        options |= {"host": address.host, "port": address.port}
    if address.tls:
        options |= {"ssl": True, "ssl_cert_reqs": "required", "ssl_check_hostname": True}
        if target.ca_file is not None:
            options["ssl_ca_certs"] = str(target.ca_file)
    return options


def _where(address: RedisAddress) -> str:
    return address.socket_path or f"{address.host}:{address.port}"


def _describe_error(exc: BaseException, address: RedisAddress) -> tuple[str, bool]:
    """(what happened in words, whether it is a refusal the check cannot get past: auth, ACL, a bad db)."""
    import redis.exceptions as errors

    message = str(exc).strip().rstrip(".")
    if isinstance(exc, errors.AuthenticationError):
        if "NOAUTH" in message or "Authentication required" in message or "HELLO must be called" in message:
            return "authentication required: the server has a password and the URL gives none", True
        return f"authentication failed: {message}", True
    if isinstance(exc, errors.NoPermissionError):
        return f"permission denied: {message}", True
    if isinstance(exc, errors.BusyLoadingError):
        return "the server is loading its dataset into memory and answers nothing else yet", False
    if isinstance(exc, errors.ConnectionError) and "max number of clients reached" in message:
        return "the server refused the connection: max number of clients reached (maxclients)", False
    cause = _os_error(exc)
    if isinstance(cause, socket.gaierror):
        return describe_connect_error(cause, address.host or _where(address), _where(address)), False
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {cause.verify_message or cause.reason}", False
    if isinstance(cause, ssl.SSLError):
        return f"TLS handshake failed: {cause.reason or cause}", False
    if cause is not None and cause.errno:
        return describe_connect_error(cause, address.host or _where(address), _where(address)), False
    if isinstance(exc, errors.ResponseError):
        # A refused command (a database out of range, a proxy without INFO): the profile
        # or the grant is wrong, not the server's health.
        return f"the server refused a command: {message}", True
    if isinstance(exc, errors.ConnectionError):
        return f"the connection failed: {message or type(exc).__name__}", False
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__, False


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError under redis-py's ConnectionError (it keeps it as the context, not the cause)."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return None
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _scrub(text: str, address: RedisAddress, redactor: Redactor) -> str:
    # ${SECRET}s are redacted by name; a password written literally in the profile too.
    text = redactor.redact(text)
    return mask(text, address.password)


def _int(info: dict[str, Any], key: str) -> int | None:
    value = info.get(key)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _flag(info: dict[str, Any], key: str) -> bool | None:
    value = _int(info, key)
    return None if value is None else value != 0


def _replicas(info: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for key, value in info.items():
        if key.startswith("slave") and key[5:].isdigit() and isinstance(value, dict):
            found.append(
                {
                    "address": f"{value.get('ip')}:{value.get('port')}",
                    "state": value.get("state"),
                    "lag_s": value.get("lag"),
                    "offset": value.get("offset"),
                }
            )
    return found


def _bgsave_since_start(info: dict[str, Any]) -> bool:
    # rdb_last_bgsave_time_sec is -1 until the first background save; rdb_saves is 7.0+.
    last = _int(info, "rdb_last_bgsave_time_sec")
    return (last is not None and last >= 0) or bool(_int(info, "rdb_saves"))


def facts_from_info(info: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """RedisFacts fields from one parsed INFO reply."""
    role = info.get("role")
    server_usec = _int(info, "server_time_usec")  # Redis 5+
    master_host = info.get("master_host")
    return base | {
        "version": str(info.get("redis_version")) if info.get("redis_version") is not None else None,
        "mode": info.get("redis_mode"),
        "role": "replica" if role == "slave" else role,
        "uptime_s": _int(info, "uptime_in_seconds"),
        "server_time": server_usec / 1e6 if server_usec else time.time(),
        "used_memory": _int(info, "used_memory"),
        "used_memory_peak": _int(info, "used_memory_peak"),
        "maxmemory": _int(info, "maxmemory"),
        "maxmemory_policy": info.get("maxmemory_policy"),
        "evicted_keys": _int(info, "evicted_keys"),
        "connected_clients": _int(info, "connected_clients"),
        "maxclients": _int(info, "maxclients"),
        "blocked_clients": _int(info, "blocked_clients"),
        "rejected_connections": _int(info, "rejected_connections"),
        "keyspace_hits": _int(info, "keyspace_hits"),
        "keyspace_misses": _int(info, "keyspace_misses"),
        "rdb_last_save_time": _int(info, "rdb_last_save_time"),
        "rdb_last_bgsave_status": info.get("rdb_last_bgsave_status"),
        "rdb_bgsave_since_start": _bgsave_since_start(info),
        "rdb_changes_since_last_save": _int(info, "rdb_changes_since_last_save"),
        "rdb_bgsave_in_progress": _flag(info, "rdb_bgsave_in_progress"),
        "aof_enabled": _flag(info, "aof_enabled"),
        "aof_last_write_status": info.get("aof_last_write_status"),
        "aof_last_bgrewrite_status": info.get("aof_last_bgrewrite_status"),
        "aof_rewrite_in_progress": _flag(info, "aof_rewrite_in_progress"),
        "connected_replicas": _int(info, "connected_slaves"),
        "replicas": _replicas(info),
        "master": f"{master_host}:{info.get('master_port')}" if master_host else None,
        "master_link_status": info.get("master_link_status"),
        "master_last_io_s": _int(info, "master_last_io_seconds_ago"),
        "master_link_down_s": _int(info, "master_link_down_since_seconds"),
        "master_sync_in_progress": _flag(info, "master_sync_in_progress"),
    }


async def _read_server(client: Any, target: RedisTarget) -> dict[str, Any]:
    """PING, INFO and the queues' TYPE in one round trip; their lengths in a second."""
    keys = list(target.queues)
    first = client.pipeline(transaction=False)
    first.ping()
    first.info()
    for key in keys:
        first.type(key)
    # INFO must answer (an error raises); a key's TYPE may be refused on its own (ACL).
    replies = await first.execute(raise_on_error=False)
    ping, info = replies[:2]
    if isinstance(info, Exception):
        raise info
    found: dict[str, Any] = facts_from_info(info, {})
    if isinstance(ping, Exception):
        if not str(ping).startswith("MISCONF"):
            raise ping
        # A master whose last save failed refuses writes and PING, and still answers INFO:
        # that is the server's state, for the checks to judge, not a reason to stop.
        found["ping_refused"] = str(ping).split(". ")[0]
    queues: dict[str, dict[str, Any]] = {}
    lengths = client.pipeline(transaction=False)
    measured: list[str] = []
    for key, kind in zip(keys, replies[2:], strict=True):
        if isinstance(kind, Exception):
            queues[key] = {"error": f"TYPE {key} refused: {kind}"}
        elif kind == "none":
            queues[key] = {"type": "none", "length": 0}
        elif kind in LENGTH_COMMANDS:
            queues[key] = {"type": kind}
            lengths.execute_command(LENGTH_COMMANDS[kind], key)
            measured.append(key)
        else:
            queues[key] = {"type": kind}  # a string or hash: no queue length to take
    if measured:
        for key, length in zip(measured, await lengths.execute(raise_on_error=False), strict=True):
            if isinstance(length, Exception):
                # The key may have changed type between the two round trips.
                queues[key]["error"] = f"{LENGTH_COMMANDS[queues[key]['type']]} {key} refused: {length}"
            else:
                queues[key]["length"] = int(length)
    found["queues"] = queues
    return found | await config_fallback(client, found)


async def config_fallback(client: Any, found: dict[str, Any]) -> dict[str, Any]:
    """CONFIG GET (read-only, but an admin command) only for what INFO did not say."""
    import redis.exceptions as errors

    missing = [name for name in CONFIG_FALLBACK if found.get(name) is None]
    if not missing:
        return {}
    filled: dict[str, Any] = {"config_get": []}
    for name in missing:
        try:
            reply = await client.config_get(CONFIG_FALLBACK[name])
        except errors.ResponseError as exc:  # renamed or refused (managed services often do)
            filled["config_error"] = f"CONFIG GET {CONFIG_FALLBACK[name]} refused: {exc}"
            continue
        value = reply.get(CONFIG_FALLBACK[name])
        if value is not None:
            filled[name] = value if name == "maxmemory_policy" else int(value)
            filled["config_get"].append(CONFIG_FALLBACK[name])
    return filled


async def _probe_one(target: RedisTarget, ctx: ProbeContext) -> RedisFacts:
    import redis.asyncio as aioredis
    import redis.exceptions as errors

    timeout = ctx.profile.timeout_of(target)
    address = target.address
    base: dict[str, Any] = {"target": target.name, "url": address.shown}
    async with ctx.limit:
        started = time.perf_counter()
        client = aioredis.Redis(**client_options(address, target, timeout))
        try:
            # One deadline over the whole exchange: connect, AUTH, both round trips.
            async with asyncio.timeout(timeout):
                found = await _read_server(client, target)
        except (TimeoutError, errors.TimeoutError):
            elapsed = time.perf_counter() - started
            return RedisFacts(
                **base,
                reached=False,
                timed_out=True,
                failure=f"timed out after {elapsed:.2f}s (timeout {timeout:g}s)",
                elapsed_s=elapsed,
            )
        except (errors.RedisError, OSError, ValueError) as exc:
            described, refused = _describe_error(exc, address)
            elapsed = time.perf_counter() - started
            said = _scrub(described, address, ctx.redactor)
            if refused:
                return RedisFacts(**base, reached=True, denied=said, elapsed_s=elapsed)
            return RedisFacts(**base, reached=False, failure=said, elapsed_s=elapsed)
        finally:
            await _close(client)
    found["queues"] = {key: _scrub_queue(entry, address, ctx.redactor) for key, entry in found["queues"].items()}
    if found.get("config_error"):
        found["config_error"] = _scrub(found["config_error"], address, ctx.redactor)
    return RedisFacts(**base, reached=True, elapsed_s=time.perf_counter() - started, **found)


def _scrub_queue(entry: dict[str, Any], address: RedisAddress, redactor: Redactor) -> dict[str, Any]:
    if "error" in entry:
        return entry | {"error": _scrub(entry["error"], address, redactor)}
    return entry


async def _close(client: Any) -> None:
    # Closing a connection to a black hole must not cost another timeout.
    try:
        async with asyncio.timeout(1):
            await client.aclose()
    except Exception:  # the facts are taken; a failed close changes none of them
        pass


async def gather_redis(targets: Sequence[RedisTarget], ctx: ProbeContext) -> AsyncIterator[RedisFacts]:
    """Probe every item concurrently (one connection each); yield each one's facts as it completes."""
    async for facts in each_as_done(_probe_one(t, ctx) for t in targets):
        yield facts


PROBE: ProbeKind[RedisTarget, RedisFacts] = ProbeKind(
    name="redis",
    facts=RedisFacts,
    gather=gather_redis,
    imports=("redis.asyncio",),
)
