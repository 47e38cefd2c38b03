"""URLs as aiohttp sends them, for the lean HTTP client (`http_wire`), without importing yarl.

aiohttp builds every URL with yarl (`URL(text)`: the path and query re-quoted, dot segments
removed, the host lowercased, an IP address in its compressed form) and joins a redirect's
Location with `URL.join`. The lean client must put the same request line on the wire, so
this is yarl's algorithm for the URLs health checks use. A URL outside that set — user
info in a Location, a non-ASCII (IDNA) host name, a zone id, a host ending in a dot, a
port out of range, control characters — is `None` here, and the probe hands that target
to aiohttp rather than send something aiohttp would not
(tests/kinds/test_http_urls.py compares this with yarl's own results).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from string import ascii_letters, digits

_ALLOWED = ascii_letters + digits + "-._~" + "!$'()*,"
_QS = "+&=;"
# yarl's PATH_REQUOTER (safe "@:", protected "/+") and QUERY_REQUOTER (safe "?/:@", protected "=+&;", qs)
_PATH = (_ALLOWED + "@:" + _QS + "/+", "/+", False)
_QUERY = (_ALLOWED + "?/:@" + "=+&;", "=+&;", True)
# Already as yarl would write it: nothing to re-quote (most health URLs).
_PLAIN_PATH = re.compile(r"[A-Za-z0-9\-._~!$'()*,@:+&=;/]*")
_PLAIN_QUERY = re.compile(r"[A-Za-z0-9\-._~!$'()*,@:+&=;/?]*")
_HEX = re.compile(rb"[A-Z0-9][A-Z0-9]")
_HOST = re.compile(r"[A-Za-z0-9_.-]+")
_PORT = re.compile(r"[0-9]{1,5}")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters yarl strips or refuses, or a parser could read two ways: left to aiohttp.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _requote(text: str, rule: tuple[str, str, bool]) -> str:
    """yarl's `_Quoter(requote=True)`, byte for byte: %XX kept (upper-cased) or decoded when safe, the rest quoted."""
    safe_text, protected, qs = rule
    safe = safe_text.encode("ascii")
    data = text.encode("utf8", errors="ignore")
    out = bytearray()
    pct = bytearray()
    i = 0
    while i < len(data):
        ch = data[i]
        i += 1
        if pct:
            if 0x61 <= ch <= 0x7A:
                ch -= 32
            pct.append(ch)
            if len(pct) == 3:
                if not _HEX.match(bytes(pct[1:])):
                    out += b"%25"
                    pct.clear()
                    i -= 2
                    continue
                try:
                    decoded = chr(int(pct[1:].decode("ascii"), base=16))
                except ValueError:
                    out += b"%25"
                    pct.clear()
                    i -= 2
                    continue
                if decoded in protected:
                    out += pct
                elif decoded in safe_text:
                    out.append(ord(decoded))
                else:
                    out += pct
                pct.clear()
            elif len(pct) == 2 and i == len(data):
                out += b"%25"
                pct.clear()
                i -= 1
            continue
        if ch == 0x25:  # %
            pct.append(ch)
            if i == len(data):
                out += b"%25"
            continue
        if qs and ch == 0x20:
            out.append(0x2B)
        elif ch in safe:
            out.append(ch)
        else:
            out += f"%{ch:02X}".encode("ascii")
    return out.decode("ascii")


def _normalized(path: str) -> str:
    """yarl's `normalize_path`: '.' and '..' segments resolved, the root kept."""
    prefix = "/" if path.startswith("/") else ""
    segments = (path[1:] if prefix else path).split("/")
    kept: list[str] = []
    for segment in segments:
        if segment == "..":
            if kept:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
    if segments and segments[-1] in (".", ".."):
        kept.append("")
    return prefix + "/".join(kept)


def _path(path: str, absolute: bool) -> str:
    if not _PLAIN_PATH.fullmatch(path):
        path = _requote(path, _PATH)
    if absolute and "." in path:
        path = _normalized(path)
    return path


def _query(query: str) -> str:
    return query if _PLAIN_QUERY.fullmatch(query) else _requote(query, _QUERY)


@dataclass(frozen=True, slots=True)
class WireUrl:
    """An absolute http(s) URL as aiohttp would request it."""

    scheme: str
    host: str  # lowercased; an IPv6 address without its brackets
    port: int
    explicit_port: bool
    path: str  # re-quoted, dot segments removed, "" when the URL has none
    query: str  # re-quoted, without "?"

    @property
    def target(self) -> str:
        """The request line's target (yarl's `raw_path_qs`)."""
        path = self.path or "/"
        return f"{path}?{self.query}" if self.query else path

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)

    @property
    def host_header(self) -> str:
        """The Host header (yarl's `host_port_subcomponent`): the port only when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.explicit_port and self.port != _DEFAULT_PORTS[self.scheme]:
            return f"{host}:{self.port}"
        return host

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        netloc = f"{host}:{self.port}" if self.explicit_port else host
        return f"{self.scheme}://{netloc}{self.target}"


@lru_cache(maxsize=4096)  # a fleet's URLs share a few hosts: ip_address() once per host, not per request
def _host(text: str) -> str | None:
    """The host as yarl encodes it, or None when it is not one the lean client takes."""
    if text.startswith("["):
        if not text.endswith("]") or "%" in text:
            return None
        text = text[1:-1]
        from ipaddress import IPv6Address

        try:
            return IPv6Address(text).compressed
        except ValueError:
            return None
    if not _HOST.fullmatch(text) or text.endswith(".") or text.startswith("."):
        return None
    if text[-1].isdigit():
        from ipaddress import ip_address

        try:
            return ip_address(text).compressed
        except ValueError:
            pass
    return text.lower()


def _split(text: str) -> tuple[str, str, str, str] | None:
    """scheme, netloc, path, query (the fragment dropped) as yarl's split_url splits a plain URL."""
    scheme, colon, rest = text.partition(":")
    if not colon or not rest.startswith("//"):
        return None
    rest = rest[2:]
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc, rest = rest[:end], rest[end:]
    rest = rest.partition("#")[0]
    path, _, query = rest.partition("?")
    return scheme.lower(), netloc, path, query


# Most health URLs: a lowercase host, maybe a port, a path and query with nothing to re-quote.
_SIMPLE_URL = re.compile(
    r"(https?)://([a-z0-9_.-]+)(?::([0-9]{1,5}))?(/[A-Za-z0-9\-._~!$'()*,@:+&=;/]*)?(?:\?([A-Za-z0-9\-._~!$'()*,@:+&=;/?]*))?"
)


def parse_url(text: str) -> WireUrl | None:
    """An absolute http(s) URL, or None when the lean client leaves it to aiohttp (see the module's note)."""
    simple = _SIMPLE_URL.fullmatch(text)
    if simple:
        scheme, host_text, port_text, path, query = simple.groups()
        host = _host(host_text)
        if host is not None and (port_text is None or 0 < int(port_text) <= 65535):
            path = path or ""
            port = int(port_text) if port_text else _DEFAULT_PORTS[scheme]
            return WireUrl(
                scheme, host, port, port_text is not None, _normalized(path) if "." in path else path, query or ""
            )
    if _CONTROL.search(text) or text[:1].isspace():
        return None
    parts = _split(text)
    if parts is None:
        return None
    scheme, netloc, path, query = parts
    if scheme not in _DEFAULT_PORTS:
        return None
    return _absolute(scheme, netloc, path, query)


def _absolute(scheme: str, netloc: str, path: str, query: str) -> WireUrl | None:
    if not netloc or "@" in netloc:
        return None
    if netloc.startswith("["):
        host_text, bracket, after = netloc.partition("]")
        if not bracket:
            return None
        host_text += "]"
        if after and not after.startswith(":"):
            return None
        port_text = after[1:] if after else None
    else:
        host_text, colon, port_text_or = netloc.partition(":")
        port_text = port_text_or if colon else None
        if ":" in port_text_or:
            return None
    host = _host(host_text)
    if host is None:
        return None
    if port_text is None:
        port, explicit = _DEFAULT_PORTS[scheme], False
    elif _PORT.fullmatch(port_text) and 0 < int(port_text) <= 65535:
        port, explicit = int(port_text), True
    else:
        return None
    return WireUrl(scheme, host, port, explicit, _path(path, absolute=True), _query(query) if query else "")


def joined(base: WireUrl, location: str) -> WireUrl | None:
    """A redirect's Location resolved against the URL that answered it (yarl's `URL.join`), or None (aiohttp's).

    Handled: an absolute http(s) URL, a scheme-relative `//host/path`, an absolute path
    `/path` and a relative path `a/b`, each with a query. Anything else (another scheme,
    `http:/path`, user info, characters that need judgement) goes to aiohttp, which has
    its own errors for them.
    """
    if _CONTROL.search(location) or location[:1].isspace() or "\\" in location:
        return None
    if location.startswith("//"):
        return parse_url(f"{base.scheme}:{location}")
    head = location.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if ":" in head:
        return parse_url(location) if location.lower().startswith(("http://", "https://")) else None
    rest = location.partition("#")[0]
    relative, _, query = rest.partition("?")
    if relative and not relative.startswith("/") and "%" in base.path:
        return None  # yarl joins a relative path to the base's decoded segments: aiohttp's to do
    relative = _path(relative, absolute=False)
    query = _query(query) if query else ""
    if relative:
        if relative.startswith("/"):
            path = relative
        elif not base.path:
            path = f"/{relative}"
        elif base.path.endswith("/"):
            path = base.path + relative
        else:
            path = base.path.rsplit("/", 1)[0] + "/" + relative
        path = _normalized(path) if "." in path else path
    else:
        path = base.path
        query = query or base.query
    return WireUrl(base.scheme, base.host, base.port, base.explicit_port, path, query)
