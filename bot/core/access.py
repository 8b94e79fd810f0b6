"""Who may ask, and how often: an optional allowlist, a per-minute rate and a daily budget.

Admins are always admitted. Questions are counted in the state database, so limits survive a
restart and /stats can say how many people asked today.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from bot.state import StateStore

RATE_WINDOW_S = 60.0


class AccessMode(StrEnum):
    """Open to everyone, or restricted to an allowlist of user and chat ids."""

    OPEN = "open"
    RESTRICTED = "restricted"


@dataclass(frozen=True)
class AccessSettings:
    """The limits (0 means no limit)."""

    mode: AccessMode = AccessMode.OPEN
    allowed_ids: frozenset[int] = frozenset()
    """User or chat ids admitted in restricted mode (a group's id admits everyone in it)."""
    per_minute: int = 5
    per_day: int = 200


def start_of_day(now: float) -> float:
    """Unix time of the last midnight UTC (budgets reset then)."""
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day.timestamp()


class AccessPolicy:
    """Admits or refuses a question, with the one sentence to tell the person."""

    def __init__(
        self,
        settings: AccessSettings,
        admin_ids: frozenset[int],
        state: StateStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.admin_ids = admin_ids
        self.state = state
        self.clock = clock
        self._lock = threading.Lock()  # a check and its record are one step per process

    def refusal(self, user_id: int, chat_id: int) -> str | None:
        """Why this user may not ask now, or None when they may (nothing is recorded)."""
        if user_id in self.admin_ids:
            return None
        limits = self.settings
        if limits.mode is AccessMode.RESTRICTED and not ({user_id, chat_id} & limits.allowed_ids):
            return (
                f"Sorry, this bot only answers people on its allowlist. "
                f"Ask an admin to add your id, {user_id}."
            )
        now = self.clock()
        midnight = start_of_day(now)
        with self._lock:
            asked = self.state.questions_since(user_id, min(midnight, now - RATE_WINDOW_S))
        today = [at for at in asked if at >= midnight]
        if limits.per_day and len(today) >= limits.per_day:
            return (
                f"You have asked {limits.per_day} questions today, the daily limit; "
                "it resets at midnight UTC."
            )
        recent = [at for at in asked if at > now - RATE_WINDOW_S]
        if limits.per_minute and len(recent) >= limits.per_minute:
            wait = math.ceil(recent[-limits.per_minute] + RATE_WINDOW_S - now)
            return f"You are asking quickly; please wait {max(wait, 1)} s and ask again."
        return None

    def record(self, user_id: int, chat_id: int) -> None:
        """Count one admitted question against the user."""
        with self._lock:
            self.state.record_question(user_id, chat_id, self.clock())

    def users_today(self) -> int:
        """Different people who asked since midnight UTC."""
        return self.state.users_since(start_of_day(self.clock()))
