"""The demo's pytest, spawned with the demo and held, its imports done, until the services are ready.

The run's arguments name the services' addresses (`--var`), known only once they are up,
and pytest's start-up (its imports, opsproof's plugin and models, the probes' libraries:
kubernetes' client alone ~0.4 s) would otherwise follow that. So `opsproof demo` spawns
`python -m opsproof.demo.held` before it starts a service; it imports what the run will
import and waits on the pipe whose read end is in $OPSPROOF_DEMO_GATE. Once the services
are ready the demo sends the command line and the secrets (one JSON object), and this
process becomes `python -m pytest <those arguments>`: the same sys.argv, sys.path, working
folder and environment, so the command shown and recorded is the user's own. The probe
processes, forked from it, find their libraries loaded. End of file without a command (a
service did not start, Ctrl-C) ends it quietly, before anything was checked: the demo says why.

Not imported here: the packages of pytest's other plugins (testinfra, xdist...). pytest
rewrites their asserts, and warns about one imported before it. opsproof's own are never
rewritten (`opsproof.run.not_rewritten`), and its docstring tells pytest so.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import importlib.metadata
import json
import os
import runpy
import select
import signal
import sys
import time
from typing import NoReturn

GATE_VARIABLE = "OPSPROOF_DEMO_GATE"
MARKS_VARIABLE = "OPSPROOF_DEMO_MARKS"  # a file: "<wall time> <what>" lines for the demo's --timeline
EXIT_NOT_RUN = 2
OWN = "opsproof"


def mark(what: str) -> None:
    """Add `what`, now, to the demo's timeline (when it asked for one)."""
    path = os.environ.get(MARKS_VARIABLE)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(f"{time.time():.6f} pytest: {what}\n")


def rewritten_by_pytest() -> set[str]:
    """The top-level packages pytest rewrites: those of every distribution with a pytest plugin (pytest11)."""
    names: set[str] = set()
    for entry in importlib.metadata.entry_points(group="pytest11"):
        names.add(entry.module.split(".")[0])
        for file in (entry.dist.files or []) if entry.dist is not None else []:
            top = file.parts[0]
            if file.suffix == ".py" and not top.endswith(".dist-info") and top not in ("..", "__pycache__"):
                names.add(top.removesuffix(".py"))
    return names


def modules() -> list[str]:
    """What a demo run imports: every probe kind's libraries, then pytest, opsproof's plugin, run and bundle.

    The probes' libraries first: the probe processes that need them run at nice 10 (those of
    kinds that judge no time), and on a busy machine would wait long to import them once let
    go; pytest imports its own at the run's priority.
    """
    from opsproof.probes import kinds

    wanted = [module for kind in kinds().values() for module in kind.imports]
    wanted += ["pytest", "opsproof.run.plugin", "opsproof.run.gather", "opsproof.run.recorder"]
    wanted += ["opsproof.evidence.bundle", "opsproof.run.results", "opsproof.run.terminal"]
    others = rewritten_by_pytest() - {OWN}
    return [module for module in dict.fromkeys(wanted) if module.split(".")[0] not in others]


def warm_up(fd: int) -> tuple[int, int]:
    """Import `modules()` until the command comes; how many were imported, of how many.

    Once it has come, the rest is left to the run: the probe processes import their own side
    by side, which is quicker than one after another here.
    """
    wanted = modules()
    for done, module in enumerate(wanted):
        if select.select([fd], [], [], 0)[0]:
            return done, len(wanted)
        with contextlib.suppress(ImportError):  # a kind's optional library: its probes say so
            importlib.import_module(module)
    return len(wanted), len(wanted)


def exit_now(code: int) -> NoReturn:
    """End this process with `code`, its output flushed and its atexit handlers run, not its modules torn down.

    For the demo's processes once their work is done (every service stopped, the bundle
    sealed): all that is left is the interpreter freeing what they imported (moto's and
    botocore's object graphs, the Kubernetes client): ~0.3 s after all has been said.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    atexit._run_exitfuncs()
    os._exit(code)


def read_to_end(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def main() -> int:
    # Spawned with Ctrl-C ignored (see opsproof.demo.run): the demo ends this process if it comes now.
    fd = int(os.environ.pop(GATE_VARIABLE))
    mark("started, held until the services are ready")
    done, total = warm_up(fd)
    mark(f"imported {done} of {total} modules the run needs, while held")
    order = read_to_end(fd)
    if not order:
        return EXIT_NOT_RUN
    command = json.loads(order)
    os.environ.update(command["environ"])
    sys.argv = [sys.argv[0], *command["args"]]
    if command.get("sigint", True):  # Ctrl-C is pytest's again (unless the demo's was ignored too)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    mark("let go: pytest starts its run")
    # Exactly what `python -m pytest ARGS` runs (runpy sets sys.argv[0] to pytest's __main__.py);
    # its SystemExit carries pytest's exit status.
    try:
        runpy.run_module("pytest", run_name="__main__", alter_sys=True)
    except SystemExit as done:
        if done.code is not None and not isinstance(done.code, int):
            raise  # a message: Python prints it and exits 1, as it would have
        exit_now(done.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
