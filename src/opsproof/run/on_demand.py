"""Entry-point plugins loaded only for runs that use them: allure-pytest, pytest-testinfra, xdist's looponfail.

pytest imports every installed `pytest11` plugin before opsproof can look at the command line.
A plain opsproof run uses none of these three (the `hosts` and `logs` kinds call testinfra as a
library, not through its plugin; `-n` does not need looponfail), yet importing them cost ~40-50 ms
of every run's start-up (looponfail ~8 ms: it imports execnet). The repository's ini blocks them
(`-p no:allure_pytest -p no:pytest11.testinfra -p no:xdist.looponfail`), and opsproof loads a
blocked one again when the command line (or addopts, or `PYTEST_ADDOPTS`) names one of its
options, before pytest parses the command line: `--alluredir DIR` and `-f` work as they did.
A team whose own checks use testinfra's `host` fixture without any of its options adds
`-p pytest11.testinfra` (see docs/custom-checks.md).
"""

from __future__ import annotations

import copy

import pytest

# Entry-point name -> the options that ask for it (prefixes: `--allure-epics`, `--hosts=...`).
ON_DEMAND: dict[str, tuple[str, ...]] = {
    "allure_pytest": ("--alluredir", "--clean-alluredir", "--allure-"),
    "pytest11.testinfra": (
        "--connection",
        "--hosts",
        "--ssh-config",
        "--ssh-extra-args",
        "--ssh-identity-file",
        "--sudo",
        "--ansible-inventory",
        "--force-ansible",
        "--nagios",
    ),
    "xdist.looponfail": ("--looponfail", "-f"),
}
# Short options: asked for only when written alone (`-f`), not as the start of another word.
_SHORT = 2


def asked_for(prefixes: tuple[str, ...], args: list[str]) -> bool:
    """Whether ARGS name an option of the plugin: `--alluredir`, `--alluredir=x`, `--sudo-user`."""
    for arg in args:
        if arg == "--":
            return False
        if any(arg == prefix if len(prefix) == _SHORT else arg.startswith(prefix) for prefix in prefixes):
            return True
    return False


def load_asked_for(config: pytest.Config, parser: pytest.Parser, args: list[str]) -> list[str]:
    """Load each blocked ON_DEMAND plugin whose options ARGS name; the names of those loaded.

    Loaded here, in `pytest_load_initial_conftests`, the plugin's `pytest_addoption` and
    `pytest_configure` are called as for any plugin, and its options parse in pytest's final pass.
    """
    manager = config.pluginmanager
    loaded = []
    for name, prefixes in ON_DEMAND.items():
        if manager.is_blocked(name) and asked_for(prefixes, args):
            manager.unblock(name)
            manager.import_plugin(name, consider_entry_points=True)
            loaded.append(name)
    if loaded:
        # pytest's early parse did not know these options: `--alluredir DIR` left DIR as a test path.
        config.known_args_namespace = parser.parse_known_args(args, namespace=copy.copy(config.option))
    return loaded
