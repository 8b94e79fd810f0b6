"""The allowlist, per-minute rate and daily budget, on a real state database and a set clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.core.access import AccessMode, AccessPolicy, AccessSettings
from bot.state import StateStore

ADMIN, USER, GROUP = 1, 5, -100
NOON = datetime(2026, 11, 25, 12, 0, tzinfo=UTC).timestamp()


class Clock:
    """Time that moves only when told to."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore.open(tmp_path / "state.db") as opened:
        yield opened


def policy(state: StateStore, clock: Clock, **limits: object) -> AccessPolicy:
    return AccessPolicy(AccessSettings(**limits), frozenset({ADMIN}), state, clock=clock)  # type: ignore[arg-type]


def ask(access: AccessPolicy, user: int = USER, chat: int = USER) -> str | None:
    """Ask once: the refusal, or None after counting the question."""
    refusal = access.refusal(user, chat)
    if refusal is None:
        access.record(user, chat)
    return refusal


def test_the_rate_limit_is_a_sliding_minute(state: StateStore) -> None:
    clock = Clock(NOON)
    access = policy(state, clock, per_minute=2, per_day=0)
    assert ask(access) is None
    clock.now += 20
    assert ask(access) is None
    clock.now += 10
    refusal = ask(access)
    assert refusal == "You are asking quickly; please wait 30 s and ask again."
    clock.now += 30  # the first question left the window
    assert ask(access) is None


def test_the_daily_budget_resets_at_midnight_utc_and_survives_a_restart(
    state: StateStore, tmp_path: Path
) -> None:
    clock = Clock(NOON)
    access = policy(state, clock, per_minute=0, per_day=3)
    for _ in range(3):
        assert ask(access) is None
        clock.now += 3600
    with StateStore.open(tmp_path / "state.db") as reopened:  # a restart keeps the count
        refusal = ask(policy(reopened, clock, per_minute=0, per_day=3))
    assert refusal is not None and "3 questions today" in refusal
    assert ask(access, user=USER + 1) is None  # budgets are per user
    clock.now = datetime(2026, 11, 26, 0, 0, 1, tzinfo=UTC).timestamp()
    assert ask(access) is None


def test_the_rate_window_reaches_back_across_midnight(state: StateStore) -> None:
    clock = Clock(datetime(2026, 11, 25, 23, 59, 50, tzinfo=UTC).timestamp())
    access = policy(state, clock, per_minute=1, per_day=10)
    assert ask(access) is None
    clock.now += 20  # a new day, but only 20 s later
    assert ask(access) is not None


def test_restricted_mode_admits_allowlisted_users_chats_and_admins(state: StateStore) -> None:
    access = policy(
        state, Clock(NOON), mode=AccessMode.RESTRICTED, allowed_ids=frozenset({USER, GROUP})
    )
    stranger = 42
    assert ask(access, USER, USER) is None
    assert ask(access, stranger, GROUP) is None
    assert ask(access, ADMIN, ADMIN) is None
    refusal = ask(access, stranger, stranger)
    assert refusal is not None and "allowlist" in refusal and str(stranger) in refusal


def test_admins_have_no_limits_and_users_today_counts_people(state: StateStore) -> None:
    clock = Clock(NOON)
    access = policy(state, clock, per_minute=1, per_day=1)
    assert all(ask(access, ADMIN, ADMIN) is None for _ in range(5))
    assert ask(access, USER) is None and ask(access, USER) is not None
    assert access.users_today() == 2
    clock.now += 86_400
    assert access.users_today() == 0
