"""Heartbeat pings (`--ping URL`), healthchecks.io's convention: `URL/start`, then `URL/<exit code>`.

A run that never starts, or dies before its end, leaves the monitor without its ping, and
the monitor (healthchecks.io, Cronitor, Uptime Kuma's push monitors...) says so. A ping is
one bounded request; whether it worked is said on the terminal and changes nothing else.
"""

from __future__ import annotations

import urllib.error
import urllib.request

from opsproof.version import __version__

PING_TIMEOUT_S = 5.0


def ping(url: str, suffix: str, timeout: float = PING_TIMEOUT_S) -> str | None:
    """GET `url/suffix`; None when it answered 2xx, else why not (without the URL, which may be a secret)."""
    request = urllib.request.Request(f"{url.rstrip('/')}/{suffix}", headers={"User-Agent": f"opsproof/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return None if 200 <= answer.status < 300 else f"HTTP {answer.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            return f"no answer within {timeout:g}s"
        return f"{type(reason).__name__}: {reason}"
