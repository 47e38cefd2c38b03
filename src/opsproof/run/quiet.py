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
What an own check prints all the same goes straight to the terminal. pytest-timeout's
hooks are left out with them when no timeout applies (none set, none marked).

The runtest protocol itself is called through the session's hook (`config.hook`), not the
file's, so a plain run's test loop (`run_checks`) calls it for own checks without pytest's
warnings wrapper (a `warnings.catch_warnings` and a marker walk around every check: ~0.03 ms
a check) when no warning filter is configured (`filterwarnings` in the ini, `-W`), and
without pytest-timeout's when no timeout applies. With a filter configured, the wrapper stays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

import pytest
from pluggy import HookCaller, HookImpl
from pluggy._hooks import _SubsetHookCaller

from opsproof.run.state import kind_of_path

# Fixtures that read what the capture and logging plugins collected.
_CAPTURING_FIXTURES = frozenset({"capsys", "capsysbinary", "capfd", "capfdbinary", "caplog"})


class _CachedSubset(_SubsetHookCaller):
    """pluggy's subset caller, whose list of implementations is filtered once, not on every call.

    Made again when a plugin registers or leaves (the hook's list changes length).
    """

    __slots__ = ("_cached", "_seen")

    def __init__(self, orig: HookCaller, remove_plugins: frozenset[object]) -> None:
        super().__init__(orig, remove_plugins)
        self._cached: list[HookImpl] = []
        self._seen = -1

    @property  # type: ignore[misc]  # pluggy marks it Final; its own subset caller overrides it so too
    def _hookimpls(self) -> list[HookImpl]:
        impls = self._orig._hookimpls
        if len(impls) != self._seen:
            self._cached = [impl for impl in impls if impl.plugin not in self._remove_plugins]
            self._seen = len(impls)
        return self._cached


class _Subset:
    """pytest's FSHookProxy with more plugins left out: one subset caller per hook, made once."""

    def __init__(self, pm: pytest.PytestPluginManager, remove: frozenset[object]) -> None:
        self._hook = pm.hook
        self._remove = remove

    def __getattr__(self, name: str) -> Any:
        caller = _CachedSubset(getattr(self._hook, name), self._remove)
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


class Quiet:
    """What `skip_capture` did: the own checks' files, the protocol hook they run through, and its undoing."""

    def __init__(self, paths: set[Path], protocol: HookCaller | None, undo: Callable[[], None]) -> None:
        self.paths = paths
        self.protocol = protocol  # None: the session's own (nothing to leave out of it)
        self.undo = undo

    def run_checks(self, session: pytest.Session) -> bool:
        """pytest's test loop (`_pytest.main.pytest_runtestloop`), own checks through `protocol`."""
        hook = session.config.hook.pytest_runtest_protocol
        quiet, paths, items = self.protocol or hook, self.paths, session.items
        last = len(items) - 1
        for i, item in enumerate(items):
            (quiet if item.path in paths else hook)(item=item, nextitem=items[i + 1] if i < last else None)
            if session.shouldfail:
                raise session.Failed(session.shouldfail)
            if session.shouldstop:
                raise session.Interrupted(session.shouldstop)
        return True


def skip_capture(session: pytest.Session, items: list[pytest.Item]) -> Quiet | None:
    """Route the hooks of own checks around capture and logging; None when nothing was done."""
    config = session.config
    pm = config.pluginmanager
    if config.getini("log_cli") or config.getoption("log_cli_level", None):
        return None  # live logging prints each check's records as it runs: the logging plugin stays
    paths = quiet_paths(items)
    plugins = {pm.get_plugin(name) for name in ("capturemanager", "logging-plugin")} - {None}
    timeout = _inert_timeout(config, [item for item in items if item.path in paths])
    if timeout is not None:
        plugins.add(timeout)
    if not plugins or not paths:
        return None
    around = {timeout} if timeout is not None else set()
    warnings = pm.get_plugin("warnings")
    if warnings is not None and not _warning_filters(config):
        around.add(warnings)
    protocol = _CachedSubset(pm.hook.pytest_runtest_protocol, frozenset(around)) if around else None
    original = session.gethookproxy
    proxies: dict[Path, Any] = {}

    def gethookproxy(fspath: Any) -> Any:
        path = fspath if isinstance(fspath, Path) else Path(fspath)
        proxy = proxies.get(path)  # asked ~6 times a check: the known answer first
        if proxy is not None:
            return proxy
        if path not in paths:
            return original(fspath)
        # The conftests that do not apply to this file stay out, as in pytest's own proxy.
        # Worked out once per file (pytest works it out on every hook call).
        unused = pm._conftest_plugins.difference(pm._getconftestmodules(path))
        proxy = proxies[path] = _Subset(pm, frozenset(unused) | frozenset(plugins))
        return proxy

    session.gethookproxy = gethookproxy  # type: ignore[method-assign]

    def undo() -> None:
        session.gethookproxy = original  # type: ignore[method-assign]

    return Quiet(paths, protocol, undo)


def _warning_filters(config: pytest.Config) -> bool:
    """Whether warning filters are configured for the tests (the ini's `filterwarnings`, `-W`)."""
    return bool(config.getini("filterwarnings") or getattr(config.known_args_namespace, "pythonwarnings", None))


def _inert_timeout(config: pytest.Config, items: list[pytest.Item]) -> object | None:
    """pytest-timeout, when it has nothing to time in these checks (no timeout set, none marked); else None.

    Left in, it looks up each check's `timeout` marker twice and wraps two of its hooks.
    """
    plugin = config.pluginmanager.get_plugin("timeout")
    if plugin is None or getattr(config, "_env_timeout", True):
        return None
    expire_key = getattr(plugin, "SESSION_EXPIRE_KEY", None)
    if expire_key is None or config.stash.get(expire_key, None):
        return None  # a session timeout is checked after every check
    seen: set[tuple[Path, str]] = set()
    for item in items:  # a marker is the function's (opsproof's own parameters carry none)
        function = (item.path, getattr(item, "originalname", item.name))
        if function not in seen:
            seen.add(function)
            if item.get_closest_marker("timeout") is not None:
                return None
    return cast(object, plugin)
