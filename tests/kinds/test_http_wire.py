"""The lean HTTP client (probes/http_wire.py) against aiohttp: the same facts from the same servers.

Every answer here comes from a real server scripted at the byte level
(tests/helpers/wire_servers.py): each target is probed once through the lean client and
once through aiohttp (`gather_http(..., lean=False)`, the path the probe keeps for the
targets the lean client leaves), and the facts must be equal field by field — status,
reason, content type, Location, the body (an echo of the request head, where the route
echoes: the bytes sent must be equal too), truncation, and every failure's words.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import socket
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.wire_servers import CLOSE, Scripted, Step, answer, chunked, scripted_servers

from conftest import http_profile, listening_black_hole
from opsproof import load_profile
from opsproof.probes import ProbeContext, http, kind_named
from opsproof.probes.http import HttpFacts, gather_http

JSON = json.dumps({"status": "healthy", "checks": {"db": "ok"}}).encode()
TEXT = b"OK: all systems go " * 20
PORTS: dict[str, int] = {}  # the TLS server's port, for a redirect from plain HTTP to it
TIMING = {"probed_at", "elapsed_s", "latency_s", "latency_samples_ms"}


def _port_of(head: bytes) -> str:
    return re.search(rb"\r\n[Hh]ost: [^\r]*:(\d+)", head).group(1).decode()  # type: ignore[union-attr]


def _echo(head: bytes) -> list[Step]:
    """The request head as the body (for HEAD, only its length: a body there would be the next answer's garbage)."""
    if head.startswith(b"HEAD "):
        return [answer(headers=("Content-Type: text/plain", f"Content-Length: {len(head)}"), length=False)]
    return [answer(body=head, headers=("Content-Type: text/plain; charset=utf-8",))]


def _redirect(status: str, location: str) -> Any:
    def script(head: bytes) -> list[Step]:
        where = location.replace("PORT", _port_of(head))
        return [answer(status, headers=(f"Location: {where}",))]

    return script


def _chain(n: int) -> Any:
    return _redirect("302 Found", f"/chain/{n - 1}" if n > 1 else "/echo")


def _head_aware(head: bytes) -> list[Step]:
    if head.startswith(b"HEAD "):
        return [answer(headers=("Content-Type: application/json", f"Content-Length: {len(JSON)}"), length=False)]
    return [answer(body=JSON, headers=("Content-Type: application/json",))]


_calls = {"flaky": 0}


def _flaky(head: bytes) -> list[Step]:
    """Every other request's connection is closed unanswered: a client that sends once more gets the next answer."""
    _calls["flaky"] += 1
    return [CLOSE] if _calls["flaky"] % 2 else [answer(body=JSON, headers=("Content-Type: application/json",))]


ROUTES: dict[str, Any] = {
    "/flaky": _flaky,
    "/uri-header": lambda head: [answer("302 Found", headers=("URI: /echo?via=uri",))],
    "/keep-alive-10": lambda head: [b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"],
    "/json": lambda head: [answer(body=JSON, headers=("Content-Type: application/json",))],
    "/head": _head_aware,
    "/echo": _echo,
    "/echo/": _echo,
    "/r/echo": _echo,
    "/chunked": lambda head: [
        answer(headers=("Content-Type: application/json", "Transfer-Encoding: chunked"), length=False),
        b"5;ext=1\r\n" + JSON[:5] + b"\r\n",
        0.02,
        chunked(JSON[5:20], JSON[20:])[:-2] + b"X-Trailer: yes\r\n\r\n",
    ],
    "/gzip": lambda head: [answer(body=gzip.compress(JSON), headers=("Content-Encoding: gzip",))],
    "/gzip-chunked": lambda head: [
        answer(headers=("Content-Encoding: GZIP", "Transfer-Encoding: chunked"), length=False),
        chunked(*(lambda data: [data[:10], data[10:]])(gzip.compress(TEXT))),
    ],
    "/gzip-members": lambda head: [
        answer(body=gzip.compress(b"first ") + gzip.compress(b"second"), headers=("Content-Encoding: gzip",))
    ],
    "/deflate": lambda head: [answer(body=zlib.compress(TEXT), headers=("Content-Encoding: deflate",))],
    "/raw-deflate": lambda head: [
        answer(
            body=(lambda z: z.compress(TEXT) + z.flush())(zlib.compressobj(wbits=-15)),
            headers=("Content-Encoding: deflate",),
        )
    ],
    "/bad-gzip": lambda head: [answer(body=b"not gzip at all", headers=("Content-Encoding: gzip",))],
    "/identity": lambda head: [answer(body=TEXT, headers=("Content-Encoding: identity",))],
    "/close-delimited": lambda head: [
        answer(headers=("Content-Type: text/plain", "Connection: close"), length=False),
        TEXT[:100],
        0.02,
        TEXT[100:],
        CLOSE,
    ],
    "/no-type": lambda head: [answer(body=TEXT)],
    "/latin1": lambda head: [
        answer(body="café crème".encode("latin-1"), headers=("Content-Type: text/plain; charset=latin-1",))
    ],
    "/odd-type": lambda head: [answer(body=b"<p>x</p>", headers=('Content-Type: Text/HTML; Charset="ISO-8859-1"',))],
    "/no-content": lambda head: [answer("204 No Content", length=False)],
    "/not-modified": lambda head: [
        answer("304 Not Modified", headers=("Content-Type: application/json",), length=False)
    ],
    "/continue": lambda head: [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        answer(body=JSON, headers=("Content-Type: application/json",)),
    ],
    "/http10": lambda head: [b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", CLOSE],
    "/no-reason": lambda head: [b"HTTP/1.1 503\r\nContent-Length: 4\r\n\r\ndown"],
    "/bare-lf": lambda head: [b"HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 2\n\nok"],
    "/r301": _redirect("301 Moved Permanently", "/echo"),
    "/r302": _redirect("302 Found", "http://127.0.0.1:PORT/echo?from=302"),
    "/r303": _redirect("303 See Other", "/echo"),
    "/r/r307": _redirect("307 Temporary Redirect", "echo?relative=1"),
    "/r308": _redirect("308 Permanent Redirect", "//127.0.0.1:PORT/r/./x/../echo"),
    "/cross": _redirect("302 Found", "http://localhost:PORT/echo"),
    "/same": _redirect("302 Found", "/echo"),
    "/to-ftp": _redirect("302 Found", "ftp://files.example/x"),
    "/loop": _redirect("302 Found", "/loop"),
    "/to-tls": lambda head: _redirect("302 Found", f"https://127.0.0.1:{PORTS['tls']}/echo?tls")(head),
    "/no-location": lambda head: [answer("302 Found", b"moved somewhere")],
    "/garbage": lambda head: [b"garbage\r\n\r\n", CLOSE],
    "/bad-code": lambda head: [b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n", CLOSE],
    "/bad-header": lambda head: [b"HTTP/1.1 200 OK\r\nBad Header: x\r\nContent-Length: 0\r\n\r\n", CLOSE],
    "/bad-length": lambda head: [b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\nabc", CLOSE],
    "/bad-chunk": lambda head: [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc", CLOSE],
    "/closed-before": lambda head: [CLOSE],
    "/closed-mid-head": lambda head: [b"HTTP/1.1 200 OK\r\nContent-Ty", CLOSE],
    "/closed-mid-body": lambda head: [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + TEXT[:10], CLOSE],
    "/chunk-cut": lambda head: [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", CLOSE],
    "/too-big": lambda head: [answer(body=TEXT * 10, headers=("Content-Type: text/plain",))],
    "/too-big-chunked": lambda head: [
        answer(headers=("Transfer-Encoding: chunked",), length=False),
        chunked(*[TEXT] * 10),
    ],
    "/too-big-gzip": lambda head: [answer(body=gzip.compress(TEXT * 100), headers=("Content-Encoding: gzip",))],
    "/slow-body": lambda head: [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + TEXT[:10], 5.0],
}
for _n in range(1, 11):
    ROUTES[f"/chain/{_n}"] = _chain(_n)


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scripted]:
    with scripted_servers(ROUTES, tmp_path_factory.mktemp("wire")) as server:
        PORTS["tls"] = server.tls
        yield server


def _items(s: Scripted) -> list[str]:
    plain = f"http://127.0.0.1:{s.plain}"
    paths = [path for path in ROUTES if not path.startswith("/chain/") and not path.endswith("/")]
    items = [f"{{name: {path.strip('/').replace('/', '-')}, url: '{plain}{path}'}}" for path in paths]
    follow = "follow_redirects: true"
    items += [
        f"{{name: {name}-followed, url: '{plain}{path}', {follow}}}"
        for name, path in [
            ("r301", "/r301"), ("r302", "/r302"), ("r307", "/r/r307"), ("r308", "/r308"), ("same", "/same"),
            ("to-ftp", "/to-ftp"), ("loop", "/loop"), ("no-location", "/no-location"), ("chain-9", "/chain/9"),
            ("chain-10", "/chain/10"), ("uri-header", "/uri-header"),
        ]
    ]  # fmt: skip
    items += [
        f"{{name: head-method, url: '{plain}/head', method: HEAD}}",
        f"{{name: r303-options, url: '{plain}/r303', method: OPTIONS, {follow}}}",
        f"{{name: r303-head, url: '{plain}/r303', method: HEAD, {follow}}}",
        # Cross-origin (127.0.0.1 -> localhost): the credentials, Authorization and Cookie stay behind, the rest go on.
        f"{{name: cross-userinfo, url: 'http://ops:p%C3%A4ss@127.0.0.1:{s.plain}/cross', {follow},"
        " headers: {Cookie: a=1, X-Kept: kept}}",
        f"{{name: cross-header, url: '{plain}/cross', {follow}, headers: {{Authorization: 'Bearer t0k'}}}}",
        f"{{name: same-userinfo, url: 'http://ops:p%C3%A4ss@127.0.0.1:{s.plain}/same', {follow}}}",
        f"{{name: auth-twice, url: 'http://ops:pw@127.0.0.1:{s.plain}/echo', headers: {{Authorization: 'Bearer t'}}}}",
        # What goes on the wire: the request line as yarl re-quotes it, the headers given, the Host header.
        f"{{name: odd-url, url: '{plain}/echo/a b/%7efoo/./x/../y;p?q=1 2&r=%2f&s=é&t=%zz#frag', method: OPTIONS,"
        " headers: {X-Custom: 'v a l', User-Agent: custom-agent/1.0, accept: application/json}}",
        f"{{name: host-given, url: '{plain}/echo', headers: {{Host: other.example}}}}",
        f"{{name: localhost, url: 'http://LocalHost:{s.plain}/echo'}}",
        f"{{name: ipv6, url: 'http://[::1]:{s.plain6}/echo?six'}}",
        f"{{name: too-big-cap, url: '{plain}/too-big', max_body: 1KB}}",
        f"{{name: too-big-chunked-cap, url: '{plain}/too-big-chunked', max_body: 1KB}}",
        f"{{name: too-big-gzip-cap, url: '{plain}/too-big-gzip', max_body: 1KB}}",
        f"{{name: exact-cap, url: '{plain}/json', max_body: {len(JSON)}B}}",
        f"{{name: slow-body-deadline, url: '{plain}/slow-body', timeout: 500ms}}",
        f"{{name: refused, url: 'http://127.0.0.1:{_closed_port()}/health'}}",
        "{name: unresolvable, url: 'http://nonexistent.invalid/health'}",
        # TLS: a CA given, an unknown CA, a certificate for another host, no verification, TLS to a plain port.
        f"{{name: tls-ca-file, url: 'https://127.0.0.1:{s.tls}/echo', ca_file: '{s.ca_file}'}}",
        f"{{name: tls-localhost, url: 'https://localhost:{s.tls}/echo', ca_file: '{s.ca_file}'}}",
        f"{{name: tls-unknown-ca, url: 'https://127.0.0.1:{s.tls}/echo'}}",
        f"{{name: tls-wrong-host, url: 'https://127.0.0.1:{s.tls_elsewhere}/echo', ca_file: '{s.ca_file}'}}",
        f"{{name: tls-unverified, url: 'https://127.0.0.1:{s.tls_elsewhere}/echo', verify_tls: false}}",
        f"{{name: tls-to-plain, url: 'https://127.0.0.1:{s.blurter}/echo'}}",
        f"{{name: tls-to-plain-unverified, url: 'https://127.0.0.1:{s.blurter}/echo', verify_tls: false}}",
        f"{{name: tls-to-plain-ca-file, url: 'https://127.0.0.1:{s.blurter}/echo', ca_file: '{s.ca_file}'}}",
        f"{{name: http-to-https, url: '{plain}/to-tls', {follow}, ca_file: '{s.ca_file}'}}",
        # URLs the lean client leaves to aiohttp from the start: a host ending in a dot, an IDNA host name.
        f"{{name: trailing-dot, url: 'http://localhost.:{s.plain}/echo'}}",
        "{name: idna, url: 'http://bücher.invalid/health'}",
    ]
    return items


def _closed_port() -> int:
    from opsproof.testing.servers import free_port

    return free_port(0)


def _probe(profile_path: Path, lean: bool) -> dict[str, HttpFacts]:
    loaded = load_profile(profile_path)
    targets = list(loaded.profile.targets("http").values())

    async def run() -> dict[str, HttpFacts]:
        ctx = ProbeContext(loaded.profile, asyncio.Semaphore(8), redactor=loaded.redactor)
        return {facts.target: facts async for facts in gather_http(targets, ctx, lean=lean)}

    return asyncio.run(run())


def _comparable(facts: HttpFacts) -> dict[str, Any]:
    shown = facts.model_dump(exclude=TIMING)
    if shown["failure"]:
        # The only words that may differ: the elapsed time, and the address of an SSLContext object in aiohttp's text.
        shown["failure"] = re.sub(r"after \d+\.\d+s", "after <elapsed>", shown["failure"])
        shown["failure"] = re.sub(r" at 0x[0-9a-f]+", " at <address>", shown["failure"])
    return shown


def test_the_lean_client_gives_the_facts_aiohttp_gives(
    scripted: Scripted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(http_profile(*_items(scripted)))
    handed_over: list[str] = []
    original = http.via_aiohttp

    def counted(session: Any, contexts: dict[Any, Any]) -> Any:
        exchange = original(session, contexts)

        async def counting(target: Any) -> Any:
            handed_over.append(target.name)
            return await exchange(target)

        return counting

    with monkeypatch.context() as patched:
        patched.setattr(http, "via_aiohttp", counted)
        lean = _probe(path, lean=True)
    # aiohttp's: the two URLs the lean client does not take, and the redirect to ftp://; every other case was lean.
    assert sorted(handed_over) == ["idna", "to-ftp-followed", "trailing-dot"]
    reference = _probe(path, lean=False)
    assert set(lean) == set(reference)
    differences = {
        name: (_comparable(lean[name]), _comparable(reference[name]))
        for name in reference
        if _comparable(lean[name]) != _comparable(reference[name])
    }
    assert not differences, json.dumps(differences, indent=1, ensure_ascii=False)[:6000]
    # The cases mean what they say (so equal facts are not two equal failures of a broken script).
    said = {name: facts for name, facts in lean.items()}
    assert said["json"].json_body == {"status": "healthy", "checks": {"db": "ok"}}
    assert said["chunked"].json_body == said["json"].json_body
    assert said["gzip"].json_body == said["json"].json_body and said["gzip-chunked"].body_text == TEXT.decode()
    assert said["gzip-members"].body_text == "first second"
    assert said["deflate"].body_text == said["raw-deflate"].body_text == TEXT.decode()
    assert said["bad-gzip"].failure and "Can not decode content-encoding: gzip" in said["bad-gzip"].failure
    assert said["close-delimited"].body_text == TEXT.decode()
    assert said["no-type"].content_type == "application/octet-stream"
    assert said["latin1"].body_text == "café crème"
    assert (said["odd-type"].content_type, said["no-content"].status, said["not-modified"].status) == (
        "text/html",
        204,
        304,
    )
    assert said["head-method"].status == 200 and said["head-method"].body_bytes == 0
    assert said["continue"].status == 200 and said["no-reason"].reason == ""
    for name in ("r301", "r302", "r307", "r308", "same", "chain-9"):
        assert said[f"{name}-followed"].status == 200 and said[f"{name}-followed"].body_text.startswith("GET /")
    assert said["r307-followed"].body_text.startswith("GET /r/echo?relative=1 ")
    assert said["r308-followed"].body_text.startswith("GET /r/echo ")
    assert said["r303-options"].body_text.startswith("GET /echo ") and said["r303-head"].status == 200
    assert said["r301"].status == 301 and said["r301"].location == "/echo"
    assert said["loop-followed"].failure == said["chain-10-followed"].failure == "bad HTTP response: "
    assert said["no-location-followed"].status == 302
    assert said["to-ftp-followed"].failure == "NonHttpUrlRedirectClientError: ftp://files.example/x"
    cross = said["cross-userinfo"].body_text
    assert "X-Kept: kept" in cross and "Authorization" not in cross and "Cookie" not in cross, cross
    assert "Authorization" not in said["cross-header"].body_text
    # UTF-8 Basic auth, kept on the same origin.
    assert "Authorization: Basic b3BzOnDDpHNz" in said["same-userinfo"].body_text
    assert said["auth-twice"].failure == (
        "ValueError: Cannot combine AUTHORIZATION header with AUTH argument or credentials encoded in URL"
    )
    assert said["odd-url"].body_text.startswith("OPTIONS /echo/a%20b/~foo/y;p?q=1+2&r=/&s=%C3%A9&t=%25zz HTTP/1.1\r\n")
    assert said["host-given"].body_text.splitlines()[1] == "Host: other.example"
    assert f"Host: localhost:{scripted.plain}" in said["localhost"].body_text
    assert said["ipv6"].body_text.startswith("GET /echo?six HTTP/1.1\r\nHost: [::1]:")
    for name in ("garbage", "bad-code", "bad-header", "bad-length", "bad-chunk"):
        assert (said[name].failure or "").startswith("bad HTTP response: "), name
    assert said["closed-before"].failure == said["closed-mid-head"].failure
    assert said["closed-before"].failure == "the server closed the connection without answering"
    assert said["flaky"].status == 200  # sent once more on a new connection, as aiohttp does
    assert said["uri-header-followed"].body_text.startswith("GET /echo?via=uri ")
    assert "Not enough data to satisfy content length header (received 10 of 100" in (
        said["closed-mid-body"].failure or ""
    )
    for name in ("too-big-cap", "too-big-chunked-cap", "too-big-gzip-cap"):
        assert said[name].body_truncated and said[name].body_bytes == 1024, name
    assert not said["exact-cap"].body_truncated and said["exact-cap"].json_body
    assert said["slow-body-deadline"].timed_out
    assert "connection refused" in (said["refused"].failure or "")
    assert (said["unresolvable"].failure or "").startswith("cannot resolve nonexistent.invalid: ")
    assert said["tls-ca-file"].status == said["tls-localhost"].status == said["tls-unverified"].status == 200
    assert (said["tls-unknown-ca"].failure or "").startswith("TLS certificate verification failed: ")
    from opsproof.probes.http_wire import verifying_context

    assert verifying_context.cache_info().currsize == 1  # made once, for the items that verify with the system's CAs
    assert "mismatch" in (said["tls-wrong-host"].failure or "").lower()
    assert (said["tls-to-plain"].failure or "").startswith("TLS handshake failed: ")
    assert said["http-to-https"].body_text.startswith("GET /echo?tls HTTP/1.1\r\n")


def test_a_second_sample_reuses_the_first_ones_connection(scripted: Scripted, tmp_path: Path) -> None:
    """`_confirm`'s second request goes on the first one's connection (keep-alive), as with aiohttp."""
    path = tmp_path / "p.yaml"
    url = f"http://127.0.0.1:{scripted.plain}/slow-first"
    ROUTES["/slow-first"] = lambda head: [0.15, answer(body=JSON, headers=("Content-Type: application/json",))]
    path.write_text(http_profile(f"{{name: slow, url: '{url}', expect: {{latency: {{warn: 50ms}}}}}}"))
    facts = _probe(path, lean=True)["slow"]
    assert facts.latency_samples_ms is not None and len(facts.latency_samples_ms) == 2
    seen = scripted.requests_to("/slow-first")
    assert len(seen) == 2 and seen[0].connection == seen[1].connection


def test_the_http_probe_process_imports_no_aiohttp_but_metrics_does(scripted: Scripted, tmp_path: Path) -> None:
    """A profile of http items only: its probe process imports the lean client and probes without aiohttp."""
    assert kind_named("http").imports == ("opsproof.probes.http_wire",)
    assert "aiohttp" in kind_named("metrics").imports and "aiohttp" in kind_named("prometheus").imports
    path = tmp_path / "p.yaml"
    path.write_text(http_profile(f"{{name: a, url: 'http://127.0.0.1:{scripted.plain}/json'}}"))
    script = (
        "import sys, json; from pathlib import Path; from opsproof import load_profile;"
        "from opsproof.probes import import_libraries, kind_named;"
        "from opsproof.run.gather import Gatherer;"
        "import_libraries(kind_named('http'));"
        f"loaded = load_profile(Path({str(path)!r}));"
        "gatherer = Gatherer(loaded.profile, in_child=False, redactor=loaded.redactor);"
        "gatherer.start({'http': {'a'}}); status = gatherer.facts('http', 'a').status; gatherer.stop();"
        "from opsproof.probes.http_wire import verifying_context;"
        "print(json.dumps([status, sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'yarl')),"
        " verifying_context.cache_info().currsize]))"
    )
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    # Answered, without aiohttp or yarl, and no verifying TLS context made (the system's trust store unread).
    assert json.loads(shown.splitlines()[-1]) == [200, [], 0]


@pytest.mark.parametrize(
    "raw",
    [
        "text/plain",
        'Text/HTML; Charset="ISO-8859-1"',
        ";charset=utf-8",
        "text/plain; charset=",
        "application/json;charset=UTF-8",
        "text",
        "a/b/c; charset=x",
        "text/plain; format=flowed; charset=utf-8",
        " text/plain ; charset = utf-8 ",
        'text/plain; charset="utf\\"8"',
        "TEXT/PLAIN;CHARSET=ascii",
        "text/plain; charset=utf-8; charset=latin1",
        "ünï/cøde; charset=é",
        "",
    ],
)
def test_content_type_and_charset_read_as_aiohttp_reads_them(raw: str) -> None:
    """The lean client's reading of Content-Type (a fast path, else the email parser aiohttp uses)."""
    from aiohttp.helpers import parse_content_type

    from opsproof.probes.http_answer import content_type_of

    mimetype, params = parse_content_type(raw)
    assert content_type_of(raw) == (mimetype, params.get("charset"))
    assert content_type_of(None) == ("application/octet-stream", None)


def test_aiohttp_is_opened_before_any_request_when_a_target_needs_it(tmp_path: Path) -> None:
    """Imported mid-run, aiohttp (~0.1 s of CPU) would stall the loop and inflate the latency of the answers then due."""
    path = tmp_path / "p.yaml"
    path.write_text(
        http_profile("{name: plain, url: 'http://127.0.0.1:9/a'}", "{name: idna, url: 'http://bücher.invalid/'}")
    )
    targets = list(load_profile(path).profile.targets("http").values())

    async def sessions() -> tuple[bool, bool]:
        mixed, lean_only = http.Clients(targets), http.Clients(targets[:1])  # type: ignore[arg-type]
        opened = (mixed.session is not None, lean_only.session is not None)
        await mixed.close()
        await lean_only.close()
        return opened

    assert asyncio.run(sessions()) == (True, False)


def test_a_connect_to_this_machine_skips_the_loop_and_one_that_fails_says_what_asyncio_says(
    scripted: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loopback connect is done when the non-blocking call returns: its socket goes to its transport without
    asyncio's `sock_connect` (a writer registered, a turn of the loop, SO_ERROR asked). A connect still under way
    (the listener's backlog full: the SYN is dropped) goes through it as before; a refused one raises the very
    error `sock_connect` raises (the probe's words come from it: `connection refused`, and the address list when
    several addresses fail differently)."""
    from asyncio.selector_events import BaseSelectorEventLoop

    from opsproof.probes.http_wire import _connect_socket
    from opsproof.testing.servers import free_port

    through_asyncio: list[Any] = []
    original = BaseSelectorEventLoop.sock_connect

    async def counted(loop: Any, sock: socket.socket, address: Any) -> None:
        through_asyncio.append(address)
        await original(loop, sock, address)

    monkeypatch.setattr(BaseSelectorEventLoop, "sock_connect", counted)
    tcp = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "")

    async def refused_by_asyncio(address: tuple[str, int]) -> OSError:
        with socket.socket() as sock:
            sock.setblocking(False)
            try:
                await original(asyncio.get_running_loop(), sock, address)
            except OSError as exc:
                return exc
        raise AssertionError(f"{address} accepted a connection")

    async def connects() -> tuple[tuple[str, int], OSError, OSError]:
        with await _connect_socket((*tcp, ("127.0.0.1", scripted.plain))) as sock:
            peer = sock.getpeername()
        closed = ("127.0.0.1", free_port(0))
        with pytest.raises(OSError) as ours:
            await _connect_socket((*tcp, closed))
        return peer, ours.value, await refused_by_asyncio(closed)

    peer, ours, asyncios = asyncio.run(connects())
    assert peer == ("127.0.0.1", scripted.plain)
    assert through_asyncio == []  # neither the connect that was done nor the refused one took a turn of the loop
    assert (type(ours), ours.errno, str(ours)) == (type(asyncios), asyncios.errno, str(asyncios))
    assert isinstance(ours, ConnectionRefusedError)

    with listening_black_hole(backlog=0) as port, socket.socket() as first:
        first.connect(("127.0.0.1", port))  # the backlog's one place taken: the next SYN is dropped

        async def under_way() -> None:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await _connect_socket((*tcp, ("127.0.0.1", port)))

        asyncio.run(under_way())
    assert through_asyncio == [("127.0.0.1", port)]
