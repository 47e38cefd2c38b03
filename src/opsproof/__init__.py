"""opsproof: operational runbooks as scheduled pytest checks with tamper-evident evidence.

The public API is small on purpose (guarded by tests/core/test_code_quality.py::test_public_api)::

    from opsproof import Check, CheckFailed, CheckError, Part, applies, each, load_profile, ProfileError
"""

from __future__ import annotations

import opsproof.run.not_rewritten  # noqa: F401  first: see its docstring
from opsproof.errors import CheckError, CheckFailed, ProfileError
from opsproof.model.check import Check
from opsproof.profile import Profile, load_profile
from opsproof.run.scoping import Part, applies, each
from opsproof.version import __version__

__all__ = [
    "Check",
    "CheckError",
    "CheckFailed",
    "Part",
    "Profile",
    "ProfileError",
    "__version__",
    "applies",
    "each",
    "load_profile",
]
