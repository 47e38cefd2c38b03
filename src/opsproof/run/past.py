"""The run's view of its history for `increase:` and `trend:` checks: one lazy read, shared by every check."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opsproof.compliance.observations import Observations
from opsproof.model.trends import history_window
from opsproof.run.records import identity
from opsproof.run.state import RunState, TargetRef

if TYPE_CHECKING:
    import pytest


def past_of(state: RunState) -> Observations:
    """The run's `Observations`, made on first use; nothing is read until a check asks."""
    if state.past is None:
        state.past = Observations(state.history, state.loaded.profile.environment, needs=lambda: history_needs(state))
    return state.past


def history_needs(state: RunState) -> dict[str, float]:
    """Check id -> the widest window its item (or part) judges over, for the run's checks that read the history."""
    windows: dict[int, float | None] = {}  # per profile model, walked once
    needs: dict[str, float] = {}
    for item in state.items:
        ref = _target(item)
        if ref is None:
            continue
        model = ref.part.spec if ref.part is not None else ref.model
        if id(model) not in windows:
            windows[id(model)] = history_window(model)
        window = windows[id(model)]
        if window is not None:
            needs[identity(item)[0]] = window
    return needs


def _target(item: pytest.Item) -> TargetRef | None:
    callspec: Any = getattr(item, "callspec", None)
    ref = callspec.params.get("target") if callspec is not None else None
    return ref if isinstance(ref, TargetRef) else None
