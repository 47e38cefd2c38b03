"""opsproof: operational runbooks as scheduled pytest checks with tamper-evident evidence.

The public API is small on purpose (guarded by tests/test_public_api.py)::

    from opsproof import Check, CheckFailed, load_profile, ProfileError
"""

from __future__ import annotations

from opsproof.check import Check, CheckFailed
from opsproof.profile import Profile, ProfileError, load_profile

__version__ = "0.1.0"

__all__ = ["Check", "CheckFailed", "Profile", "ProfileError", "__version__", "load_profile"]
