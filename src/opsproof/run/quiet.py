"""Output capture and log capture left out for opsproof's own check modules, which never print.

pytest captures stdout/stderr (file descriptors swapped in and out, read back) and log
records (two handlers added to the root logger and removed) around each of a check's
three phases: ~0.1 ms per check, a tenth of a 10,000-check run, spent to capture
nothing. A kind's own checks module (`checks/<area>/test_<kind>.py`) only compares facts
and raises; it never prints or logs.

So once collection is done, the hooks of those modules' checks are called without the
capture and logging plugins (`item.ihook`, through which pytest calls every per-check
hook, is the session's hook proxy for the check's file). Everything else keeps pytest's
behaviour: a check in any other module (a team's own checks), a module whose checks ask
for `capsys`, `capfd` or `caplog`, and every module when live logging (`log_cli`) is on.
What an own check prints all the same goes straight to the terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from opsproof.run.state import kind_of_path

# Fixtures that read what the capture and logging plugins collected.
_CAPTURING_FIXTURES = frozenset({"capsys", "capsysbinary", "capfd", "capfdbinary", "caplog"})


class _Subset:
    """pytest's FSHookProxy with more plugins left out: one subset caller per hook, made once."""

    def __init__(self, pm: pytest.PytestPluginManager, remove: frozenset[object]) -> None:
        self._pm = pm
        self._remove = remove

    def __getattr__(self, name: str) -> Any:
        caller = self._pm.subset_hook_caller(name, remove_plugins=self._remove)
        self.__dict__[name] = caller
        return caller


def quiet_paths(items: Iterable[pytest.Item]) -> set[Path]:
    """The files of opsproof's own checks among `items`, less those whose checks ask for captured output."""
    quiet: set[Path] = set()
    loud: set[Path] = set()
    for item in items:
        path = item.path
        if path in loud:
            continue
        if path.parent.parent.name != "checks" or kind_of_path(path) is None:
            loud.add(path)
        elif _CAPTURING_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            loud.add(path)
            quiet.discard(path)
        else:
            quiet.add(path)
    return quiet


def skip_capture(session: pytest.Session, items: list[pytest.Item]) -> Callable[[], None] | None:
    """Route the hooks of own checks around capture and logging; returns what undoes it (None: nothing done)."""
    config = session.config
    pm = config.pluginmanager
    if config.getini("log_cli") or config.getoption("log_cli_level", None):
        return None  # live logging prints each check's records as it runs: the logging plugin stays
    plugins = {pm.get_plugin(name) for name in ("capturemanager", "logging-plugin")} - {None}
    paths = quiet_paths(items)
    if not plugins or not paths:
        return None
    original = session.gethookproxy
    proxies: dict[Path, Any] = {}

    def gethookproxy(fspath: Any) -> Any:
        path = fspath if isinstance(fspath, Path) else Path(fspath)
        if path not in paths:
            return original(fspath)
        proxy = proxies.get(path)
        if proxy is None:
            # The conftests that do not apply to this file stay out, as in pytest's own proxy.
            # Worked out once per file (pytest works it out on every hook call).
            unused = pm._conftest_plugins.difference(pm._getconftestmodules(path))
            proxy = proxies[path] = _Subset(pm, frozenset(unused) | frozenset(plugins))
        return proxy

    session.gethookproxy = gethookproxy  # type: ignore[method-assign]

    def undo() -> None:
        session.gethookproxy = original  # type: ignore[method-assign]

    return undo
