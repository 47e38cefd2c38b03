"""Probes: I/O only. Each module here turns profile targets into facts, never asserts.

A probe module declares `PROBE = ProbeKind(...)`; its kind's declaration
(`KIND = Kind(...)` in opsproof/targets/<kind>.py) names the module, so the gatherer
finds every probe through the registry of kinds (`opsproof.targets.kinds()`).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from opsproof.profile import Item, Profile
from opsproof.redaction import Redactor
from opsproof.targets import Kind, kind, names
from opsproof.units import format_utc, utc_now

if TYPE_CHECKING:
    import asyncio

    from opsproof.compliance.history import Location

# asyncio and socket are imported where they are used: the pytest process imports this package
# before the profile loads and never runs an event loop itself (its probe processes do).


class Facts(BaseModel):
    """What a probe saw of one target. `observed()` is what the evidence record shows."""

    model_config = ConfigDict(extra="forbid")

    target: str
    reached: bool = Field(description="the target answered at all")
    timed_out: bool = False
    failure: str | None = Field(None, description="why the target was not reached, in words")
    probed_at: str = Field(default_factory=lambda: utc_now())
    elapsed_s: float = 0.0

    def observed(self) -> dict[str, Any]:
        shown = self.model_dump(exclude={"target", "probed_at"}, exclude_none=True)
        shown["elapsed_s"] = round(self.elapsed_s, 4)
        return shown


TargetT = TypeVar("TargetT", bound=Item)
FactsT = TypeVar("FactsT", bound=Facts)


@dataclass(frozen=True)
class ProbeContext:
    """Shared by all probes of one run: the profile, a bound on probes in flight, the history store."""

    profile: Profile
    limit: asyncio.Semaphore
    # Where the run's history (and attestation) store is; None when the run has none.
    history: Location | None = None
    # The run's secrets: what a probe says in words (an error, a URL) goes through it.
    redactor: Redactor = field(default_factory=Redactor)
    # The change the run validates (`--change`): change checklists are judged against it.
    change: str | None = None


@dataclass(frozen=True)
class ProbeKind(Generic[TargetT, FactsT]):
    """A kind of check target: where its items live in the profile and how to probe them."""

    name: str  # the kind's name (its profile section; check ids start with it)
    facts: type[FactsT]
    # Yields each target's facts as soon as its probe is done, so checks need not wait for all.
    gather: Callable[[Sequence[TargetT], ProbeContext], AsyncIterator[FactsT]]
    # Modules the probe imports lazily; the probe process imports them ahead of the work.
    imports: tuple[str, ...] = ()
    # The checks judge how long the targets took (HTTP latency, a drill's RTO): this kind's
    # process keeps its priority and, in a run that has one, the other kinds' processes
    # yield the CPU to it (nice 10), so another kind's parsing is not measured as a slow endpoint.
    times_targets: bool = False
    # Its probes leave things behind to clean up (a drill's throwaway cluster): when the run dies, this
    # kind's process is left to notice and clean up; any other kind's is killed with it (PR_SET_PDEATHSIG).
    cleans_up: bool = False

    @property
    def declared(self) -> Kind:
        """The kind's declaration: profile model, checks file, cadence, areas, controls."""
        return kind(self.name)

    @property
    def section(self) -> str:
        return self.name

    @property
    def cadence(self) -> str:
        """The default cadence marker of the kind's checks."""
        return self.declared.cadence


def redacted(facts: FactsT, redactor: Redactor) -> FactsT:
    """`facts` with every secret the run knows put back as its reference.

    Servers echo what they were sent, drivers echo DSNs: facts leave the probes through
    this (the gatherer calls it), so no report, traceback or Allure attachment made from
    them can show a secret.
    """
    if not redactor:
        return facts
    # Short secrets are left to the outputs' free text: in facts one could be a state the checks compare.
    return type(facts).model_validate(redactor.redact_data(facts.model_dump(), short=False))


# Probes started per turn of the event loop. Started all at once, 1,000 HTTP probes spent ~0.25 s
# of CPU opening connections before the loop read a single answer: answers due after 100 ms were
# read after 0.4 s, and the checks waited. A turn between slices lets the first requests leave,
# and answers that are in be read, while the rest start.
RAMP = 16


async def each_as_done(probes: Iterable[Awaitable[FactsT]]) -> AsyncIterator[FactsT]:
    """Run the probes together; yield each one's facts the moment it is done.

    The tasks are created here, in the profile's order and `RAMP` per turn of the event
    loop: handed coroutines, `as_completed` would schedule them in the order of a set (by
    address), and under the run's concurrency limit the last items could be probed first
    while the checks, which run in profile order, wait for the first ones.
    """
    import asyncio

    pending = list(probes)
    finished: asyncio.Queue[asyncio.Future[FactsT]] = asyncio.Queue()
    tasks: list[asyncio.Future[FactsT]] = []

    async def start_all() -> None:
        for n, probe in enumerate(pending):
            task = asyncio.ensure_future(probe)
            task.add_done_callback(finished.put_nowait)
            tasks.append(task)
            if n % RAMP == RAMP - 1:
                await asyncio.sleep(0)

    starter = asyncio.ensure_future(start_all())
    try:
        for _ in range(len(pending)):
            yield (await finished.get()).result()
        await starter
    finally:  # a consumer that stops early (cancelled, failed) leaves no probe running
        starter.cancel()
        for task in tasks:
            task.cancel()
        for probe in pending[len(tasks) :]:  # never started: closed, not left to warn "never awaited"
            if asyncio.iscoroutine(probe):
                probe.close()


def describe_connect_error(error: OSError, host: str, address: str) -> str:
    """A failed connect in words: `cannot resolve HOST: ...` or `cannot connect to ADDRESS: connection refused`."""
    import socket

    if isinstance(error, socket.gaierror):
        return f"cannot resolve {host}: {(error.strerror or str(error)).lower()}"
    # asyncio's message ("Connect call failed (...)") hides the reason the errno names.
    cause = os.strerror(error.errno) if error.errno else (error.strerror or str(error))
    return f"cannot connect to {address}: {cause.lower()}"


def utc_iso(timestamp: float) -> str:
    """A POSIX timestamp as UTC ISO 8601 with milliseconds: '2026-11-24T10:45:00.123Z'."""
    return format_utc(datetime.fromtimestamp(timestamp, UTC))


def kinds() -> dict[str, ProbeKind[Any, Any]]:
    """Every registered kind's probe, by name (imports every probe module)."""
    return {name: kind_named(name) for name in names()}


@cache
def kind_named(name: str) -> ProbeKind[Any, Any]:
    """One kind's probe, importing only its own module: cheap before the probes fork. KeyError: no such kind."""
    module = importlib.import_module(kind(name).probe)
    probe = getattr(module, "PROBE", None)
    if not isinstance(probe, ProbeKind) or probe.name != name:
        raise TypeError(f"{module.__name__} declares no PROBE = ProbeKind(name={name!r}, ...)")
    return probe


def import_libraries(probe: ProbeKind[Any, Any]) -> None:
    """In a kind's probe process, ahead of the work: the libraries its probes import lazily.

    An SSL context that verifies nothing is left without the system's trust store while they
    import: aiohttp makes two contexts at import, and loading the store into the one that
    never verifies (`verify_tls: false`) was ~21 ms of CPU of the ~0.15 s between a warm
    process's fork and its readiness for the run's state. The verifying one gets the store as before.
    """
    import ssl

    load = ssl.SSLContext.set_default_verify_paths
    own = vars(ssl.SSLContext).get("set_default_verify_paths")  # None: inherited from _ssl's class

    def unless_unverified(context: ssl.SSLContext) -> None:
        if context.verify_mode != ssl.CERT_NONE:
            load(context)

    ssl.SSLContext.set_default_verify_paths = unless_unverified  # type: ignore[method-assign, assignment]
    try:
        for module in probe.imports:
            importlib.import_module(module)
    finally:
        if own is None:
            del ssl.SSLContext.set_default_verify_paths
        else:
            ssl.SSLContext.set_default_verify_paths = own  # type: ignore[method-assign]


def kinds_in_use(profile: Profile) -> dict[str, ProbeKind[Any, Any]]:
    """The kinds the profile has items of, by name."""
    return {name: kind_named(name) for name in names() if profile.targets(name)}
