"""The pytest plugin under the entry-point name installs made before 0.2 registered (`opsproof.plugin`).

The plugin is `opsproof.run.plugin`; pyproject names it. This module only hands its
hooks and fixtures to a pytest that loads the plugin by the old name.
"""

from __future__ import annotations

from opsproof.run.plugin import (
    check,
    facts,
    item,
    opsproof_run,
    part,
    pytest_addoption,
    pytest_collection,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_generate_tests,
    pytest_ignore_collect,
    pytest_load_initial_conftests,
    pytest_runtest_makereport,
    pytest_runtest_setup,
    pytest_runtestloop,
    target,
)

__all__ = [
    "check",
    "facts",
    "item",
    "opsproof_run",
    "part",
    "pytest_addoption",
    "pytest_collection",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_generate_tests",
    "pytest_ignore_collect",
    "pytest_load_initial_conftests",
    "pytest_runtest_makereport",
    "pytest_runtest_setup",
    "pytest_runtestloop",
    "target",
]
