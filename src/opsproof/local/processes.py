"""Stopping the server processes opsproof starts itself (demo services, test and benchmark servers).

Here, in a module that imports nothing heavy, so that code stopping a process on its way out
(after Ctrl-C, which may have interrupted an import halfway) never needs an import to do it.
"""

from __future__ import annotations

import subprocess
from typing import Any


def stop_process(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL after 10 s: a server started for a demo or a test never outlives it."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
