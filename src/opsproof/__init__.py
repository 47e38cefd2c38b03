"""opsproof: operational runbooks as scheduled pytest checks with tamper-evident evidence.

The public API is small on purpose (guarded by tests/test_public_api.py)::

    from opsproof import Check, CheckFailed, CheckError, Part, applies, each, load_profile, ProfileError
"""

from __future__ import annotations

from opsproof.check import Check, CheckError, CheckFailed
from opsproof.check_scope import Part, applies, each
from opsproof.profile import Profile, ProfileError, load_profile

__version__ = "0.1.0"

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
