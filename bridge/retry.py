"""Exponential backoff with full jitter, and a sleep that a stop request cuts short."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before attempt n+1 is uniform in [0, min(maximum, initial * multiplier**(n-1))].

    Full jitter spreads retries of many lanes apart instead of letting them retry in step.
    """

    initial: float = 1.0
    maximum: float = 60.0
    multiplier: float = 2.0

    def ceiling(self, failures: int) -> float:
        exponent = max(failures - 1, 0)
        # Cap the exponent so a long outage cannot overflow the float.
        return min(self.maximum, self.initial * self.multiplier ** min(exponent, 64))

    def delay(self, failures: int, rng: Callable[[], float] = random.random) -> float:
        return rng() * self.ceiling(failures)


async def sleep_unless(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep for `seconds`; return False at once if `stop` is or becomes set."""
    if stop.is_set():
        return False
    if seconds <= 0:
        return True
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return True
    return False


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The stream error settings of a mapping; -1 means unlimited, as on AWS."""

    maximum_retry_attempts: int = -1
    maximum_record_age_in_seconds: float = -1
    bisect_batch_on_function_error: bool = False
    report_batch_item_failures: bool = False
    backoff: Backoff = field(default_factory=Backoff)

    def exhausted(self, attempts: int) -> bool:
        """`attempts` counts invocations; retries are attempts - 1 (esm-reference.md 6.1)."""
        return 0 <= self.maximum_retry_attempts < attempts
