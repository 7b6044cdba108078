"""The transition table and the state mappings."""

from __future__ import annotations

import pytest

from courier.schemas.states import (
    ENOS_STATES,
    ESPER_STATES,
    IN_FLIGHT,
    TERMINAL,
    TRANSITIONS,
    ExecutionState,
    can_transition,
)

S = ExecutionState


def test_every_state_has_a_row_and_every_mapping() -> None:
    assert set(TRANSITIONS) == set(S)
    assert set(ESPER_STATES) == set(S)
    assert set(ENOS_STATES) == set(S)


@pytest.mark.parametrize("state", sorted(TERMINAL))
def test_terminal_states_lead_nowhere(state: ExecutionState) -> None:
    assert TRANSITIONS[state] == frozenset()
    assert state.terminal
    assert not any(can_transition(state, target) for target in S)


def test_every_non_terminal_state_can_end() -> None:
    for state in set(S) - TERMINAL:
        assert TRANSITIONS[state] & TERMINAL, state


def test_every_state_is_reachable_from_queued() -> None:
    seen, frontier = {S.QUEUED}, [S.QUEUED]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(S)


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        (S.QUEUED, S.SENT, True),
        (S.SENT, S.ACKNOWLEDGED, True),
        (S.ACKNOWLEDGED, S.SENT, False),
        (S.IN_PROGRESS, S.ACKNOWLEDGED, False),
        (S.IN_PROGRESS, S.IN_PROGRESS, True),
        (S.SENT, S.QUEUED, True),
        (S.QUEUED, S.TIMED_OUT, False),
        (S.SCHEDULED, S.SENT, False),
        (S.SUCCEEDED, S.FAILED, False),
    ],
)
def test_selected_transitions(
    current: ExecutionState, target: ExecutionState, allowed: bool
) -> None:
    assert can_transition(current, target) is allowed


def test_in_flight_states() -> None:
    assert {s for s in S if s.in_flight} == IN_FLIGHT == {S.SENT, S.ACKNOWLEDGED, S.IN_PROGRESS}


def test_seed_state_names() -> None:
    assert ESPER_STATES[S.SENT] == "Command Initiated"
    assert ESPER_STATES[S.EXPIRED] == "Command TimeOut"
    assert ENOS_STATES[S.SUCCEEDED] == 5
    assert ENOS_STATES[S.TIMED_OUT] == 7
