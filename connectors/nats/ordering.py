"""Keeping each subject in order when messages are delivered again.

JetStream has no message groups: after a message of a subject is nak'ed, the server
may hand out later messages of that subject before the nak'ed one comes back. SQS FIFO
blocks a group while some of it is in flight (esm-reference.md 5.3); the source does the
same from its side. It remembers the messages it handed back, per subject, and keeps a
later message of a subject with one of them outstanding to itself (still in progress
on the server, so not delivered elsewhere and its delivery count unchanged) until the
earlier ones came back; then they go out together, in stream order. JetStream hands out
redeliveries before new messages and regardless of `max_ack_pending`, so the messages
held never keep the ones they wait for from coming.

A message handed back for the last time (its delivery count at `max_deliver`) is not
remembered: the server will not deliver it again. One that does not come back within
`forget_after` seconds (deleted from the stream meanwhile, or delivered to another
client of the consumer) is forgotten, so that its subject is not held for ever.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")


class SubjectOrder(Generic[Item]):
    """Per subject: the stream sequences handed back and not yet delivered again, and the
    later messages held until they are."""

    def __init__(self, forget_after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.forget_after = forget_after
        self._clock = clock
        # subject -> stream sequence -> when it is forgotten (clock time)
        self._outstanding: dict[str, dict[int, float]] = {}
        # subject -> stream sequence -> the message held
        self._held: dict[str, dict[int, Item]] = {}

    def handed_back(self, subject: str, sequence: int) -> None:
        held = self._outstanding.setdefault(subject, {})
        held[sequence] = self._clock() + self.forget_after

    def admit(self, subject: str, sequence: int, item: Item) -> bool:
        """True if a message just read may be delivered now; otherwise it is held (and
        comes out of `ready()` later). A message that came back is no longer outstanding."""
        outstanding = self._outstanding.get(subject)
        if outstanding:
            outstanding.pop(sequence, None)
        earliest = self._earliest_waited_for(subject)
        held = self._held.get(subject)
        if (earliest is None or earliest > sequence) and not (held and min(held) < sequence):
            return True
        self._held.setdefault(subject, {})[sequence] = item
        return False

    def ready(self) -> list[tuple[int, Item]]:
        """The held messages whose subject no longer waits for an earlier one, as
        (stream sequence, message) in stream order."""
        released: list[tuple[int, Item]] = []
        for subject in list(self._held):
            held = self._held[subject]
            earliest = self._earliest_waited_for(subject)
            for sequence in sorted(held):
                if earliest is not None and sequence > earliest:
                    break
                released.append((sequence, held.pop(sequence)))
            if not held:
                del self._held[subject]
        released.sort(key=lambda pair: pair[0])
        return released

    def _earliest_waited_for(self, subject: str) -> int | None:
        """The earliest outstanding sequence of the subject, forgetting expired ones."""
        outstanding = self._outstanding.get(subject)
        if not outstanding:
            return None
        now = self._clock()
        for sequence, forget_at in list(outstanding.items()):
            if forget_at <= now:
                del outstanding[sequence]
        if not outstanding:
            del self._outstanding[subject]
            return None
        return min(outstanding)

    @property
    def held(self) -> int:
        """Messages held back."""
        return sum(map(len, self._held.values()))
