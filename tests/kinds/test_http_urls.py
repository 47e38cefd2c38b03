"""The lean client's URLs (probes/http_urls.py) against yarl's, which aiohttp sends.

Every URL the lean client takes must give the request line, Host header and origin yarl
gives (aiohttp builds its requests from `yarl.URL(text)`), and every redirect it resolves
must land where aiohttp's `URL.join` lands. The URLs are a list of awkward ones and a few
thousand made at random (a fixed seed) from the characters that need quoting.
"""

from __future__ import annotations

import random

import pytest
from yarl import URL

from opsproof.probes.http_urls import WireUrl, joined, parse_url

AWKWARD = [
    "http://127.0.0.1:8080/health",
    "http://example.com",
    "http://example.com?x=1",
    "http://Example.COM:80/a",
    "https://example.com:443/a",
    "https://example.com:8443/a/b/",
    "http://[::1]:9000/x",
    "http://[0:0::1]/x",
    "http://127.000.0.1/x",
    "http://h/a b/%7efoo/./x/../y;p?q=1 2&r=%2f&s=é&t=%zz#frag",
    "http://h/%2F%2f/%41%7A/%e2%82%ac/€?%3D=%26&a=b=c&+x",
    "http://h/a/./b/../../c/.",
    "http://h/..",
    "http://h/a%",
    "http://h/a%4",
    "http://h/?",
    "http://h/p?#",
    "http://h/p?a=%%41",
    "http://h/p?a=%G1&b=%1G",
    "http://h/~user/file.txt?x=[1]&y={2}|^`",
    'http://h/"quoted"<angle>',
    "http://my_host.internal:1/x",
    "http://h:65535/",
]
REFUSED = [
    "http://h:65536/",
    "http://h:/x",
    "http://h:0/",
    "http://user:pw@h/",
    "http://éxample.com/",
    "http://example.com./",
    "http://[fe80::1%eth0]/",
    "http://[::1/x",
    "ftp://h/x",
    "http:/h/x",
    " http://h/x",
    "http://h/x\ny",
    "http://h\\evil/x",
]
LOCATIONS = [
    "/echo",
    "echo",
    "echo?x=1",
    "../up",
    "./same",
    "?only=query",
    "#frag",
    "",
    "//other.example:81/p",
    "http://other.example/p?q",
    "https://example.com/",
    "/a b/é?c d",
    "a/../../b",
    "/p/./q/../r",
]


def _check(mine: WireUrl, text: str) -> None:
    theirs = URL(text)
    assert (mine.target, mine.host, mine.port) == (theirs.raw_path_qs, theirs.raw_host, theirs.port), text
    assert mine.host_header == theirs.host_port_subcomponent, text
    assert mine.origin == (theirs.origin().scheme, theirs.origin().raw_host, theirs.origin().port), text


@pytest.mark.parametrize("text", AWKWARD)
def test_awkward_urls_are_requested_as_yarl_would(text: str) -> None:
    mine = parse_url(text)
    assert mine is not None, text
    _check(mine, text)


@pytest.mark.parametrize("text", REFUSED)
def test_urls_out_of_the_lean_clients_set_are_left_to_aiohttp(text: str) -> None:
    assert parse_url(text) is None


def _random_url(rng: random.Random) -> str:
    alphabet = "aZ09-._~!$'()*,;=:@/+&?%#[] \"<>\\^`{|}é€\u00a0" + "%2F%2f%41%zz%e2%82%ac%25%3F%23"
    tail = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
    return f"http://h.example:{rng.choice(['8080', '80'])}/{tail}"


def test_random_urls_are_requested_as_yarl_would() -> None:
    rng = random.Random(18)
    taken = 0
    for _ in range(3000):
        text = _random_url(rng)
        mine = parse_url(text)
        if mine is None:
            continue
        taken += 1
        _check(mine, text)
    assert taken > 2500  # the lean client takes nearly all of them


def _aiohttp_redirect(base: str, location: str) -> URL:
    """aiohttp's resolution of a Location (client.py, ClientSession._request)."""
    parsed = URL(location)
    return URL(base).join(parsed) if not parsed.scheme else parsed


@pytest.mark.parametrize(
    "base", ["http://h.example/a/b", "http://h.example/a/b/?q=1", "http://h.example", "https://h:8443/x"]
)
@pytest.mark.parametrize("location", LOCATIONS)
def test_redirects_land_where_aiohttp_lands(base: str, location: str) -> None:
    start = parse_url(base)
    assert start is not None
    mine = joined(start, location)
    assert mine is not None, location
    theirs = _aiohttp_redirect(base, location)
    assert (mine.scheme, mine.host, mine.port, mine.target) == (
        theirs.scheme,
        theirs.raw_host,
        theirs.port,
        theirs.raw_path_qs,
    ), location


def test_random_relative_redirects_land_where_aiohttp_lands() -> None:
    rng = random.Random(13)
    start = parse_url("http://h.example/a/b/c?x=1")
    assert start is not None
    alphabet = "ab./?=& %é#"
    for _ in range(2000):
        location = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        mine = joined(start, location)
        if mine is None:
            continue
        theirs = _aiohttp_redirect("http://h.example/a/b/c?x=1", location)
        assert (mine.host, mine.target) == (theirs.raw_host, theirs.raw_path_qs), location
