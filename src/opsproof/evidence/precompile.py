"""`python -m opsproof.evidence.precompile`: keep report.html's templates' Python source beside them.

Run after editing a template in `opsproof/evidence/templates/` (see `opsproof.evidence.precompiled`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from opsproof.evidence.page import environment
from opsproof.evidence.precompiled import PRECOMPILED, SUFFIX, compiled_source


def main() -> int:
    """Write `templates/<name>.compiled` for each of PRECOMPILED."""
    env = environment()
    assert env.loader is not None
    for name in PRECOMPILED:
        _, filename, _ = env.loader.get_source(env, name)
        assert filename is not None
        target = Path(filename + SUFFIX)
        target.write_text(compiled_source(env, name), encoding="utf-8")
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
