"""opsproof.local.redis: throwaway redis-servers for the tests and the demo."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest
import redis

from opsproof.local.redis import LocalRedisError, local_redis, redis_server_binary, render_config
from opsproof.testing.servers import free_port


def test_starts_with_the_directives_and_cleans_up() -> None:
    password = 'has "quotes", spaces and \\ a backslash'
    with local_redis({"maxmemory": "8mb", "maxmemory-policy": "volatile-ttl"}, password=password) as server:
        folder, pid = server.folder, server.process.pid
        with server.client() as client:
            assert client.config_get("maxmemory") == {"maxmemory": str(8 * 1024 * 1024)}
            assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "volatile-ttl"}
            assert client.config_get("bind") == {"bind": "127.0.0.1"}
            assert client.config_get("save") == {"save": ""}
        with pytest.raises(redis.AuthenticationError), server.client(password=None) as anonymous:
            anonymous.ping()
        # The password is in a 0600 file, never on the command line `ps` shows.
        config = folder / "redis.conf"
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert password not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    assert not folder.exists()
    assert server.process.poll() is not None


def test_unix_socket() -> None:
    with local_redis(unix_socket=True) as server:
        assert server.unix_socket is not None
        with redis.Redis(unix_socket_path=str(server.unix_socket), protocol=2) as client:
            assert client.ping() is True
        assert server.unix_url(db=2) == f"unix://{server.unix_socket}?db=2"


def test_urls_carry_the_password_only_when_asked() -> None:
    with local_redis(password="p@ss/word") as server:
        assert server.url() == f"redis://{server.address}/0"
        assert server.url(password=True, db=1) == f"redis://:p%40ss%2Fword@{server.address}/1"
        with redis.Redis.from_url(server.url(password=True), protocol=2) as client:
            assert client.ping() is True


def test_preferred_port_when_free() -> None:
    port = free_port(0)
    with local_redis(port=port) as server:
        assert server.port == port


def test_a_bad_directive_says_why_and_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with (
        pytest.raises(LocalRedisError, match=r"(?s)redis-server did not start:.*Bad directive"),
        local_redis({"no-such-directive": "1"}),
    ):
        pass
    assert list(tmp_path.iterdir()) == []


def test_an_error_in_the_block_still_stops_the_server() -> None:
    with pytest.raises(RuntimeError, match="boom"), local_redis() as server:
        raise RuntimeError("boom")
    assert server.process.poll() is not None
    assert not server.folder.exists()


def test_stop_is_quick_even_when_the_final_save_would_fail() -> None:
    with local_redis({"save": ["3600", "1"]}) as server:
        with server.client() as client:
            client.set("k", "v")
        for child in server.data_dir.iterdir():
            child.unlink()
        server.data_dir.rmdir()  # a SIGTERM's final save would fail, and redis would not exit
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 2
        assert not server.running
        server.stop()  # twice is fine


def test_binary_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bundled = redis_server_binary()
    assert os.access(bundled, os.X_OK)
    monkeypatch.setenv("OPSPROOF_REDIS_SERVER", bundled)
    assert redis_server_binary() == bundled
    not_executable = tmp_path / "redis-server"
    not_executable.write_text("")
    monkeypatch.setenv("OPSPROOF_REDIS_SERVER", str(not_executable))
    with pytest.raises(LocalRedisError, match="is not an executable file"):
        redis_server_binary()


def test_render_config_quotes_every_argument() -> None:
    assert render_config({"save": ["900", 1], "requirepass": 'a"b\\c', "dir": "/tmp/x y"}) == (
        'save "900" "1"\nrequirepass "a\\"b\\\\c"\ndir "/tmp/x y"\n'
    )
    assert render_config({"save": ""}) == 'save ""\n'
