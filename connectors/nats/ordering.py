"""Keeping each subject in order when messages are delivered again.

JetStream has no message groups: after a message of a subject is nak'ed, the server
may hand out later messages of that subject before the nak'ed one comes back. SQS FIFO
blocks a group while some of it is in flight (esm-reference.md 5.3); the source does the
same from its side. It remembers the messages it handed back, per subject, and a later
message of a subject with one of them outstanding is handed back too (nak, at once)
instead of being delivered. A message that comes again is delivered and forgotten, so
the subject's messages go out in stream order.

A message handed back for the last time (its delivery count at `max_deliver`) is not
remembered: the server will not deliver it again. One that does not come back within
`forget_after` seconds (deleted from the stream meanwhile, or delivered to another
client of the consumer) is forgotten, so that its subject is not held for ever.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class SubjectOrder:
    """Per subject: the stream sequences handed back and not yet delivered again."""

    def __init__(self, forget_after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.forget_after = forget_after
        self._clock = clock
        # subject -> stream sequence -> when it is forgotten (clock time)
        self._outstanding: dict[str, dict[int, float]] = {}

    def handed_back(self, subject: str, sequence: int) -> None:
        held = self._outstanding.setdefault(subject, {})
        held[sequence] = self._clock() + self.forget_after

    def admit(self, subject: str, sequence: int) -> bool:
        """Whether a message just read may be delivered now: True unless an earlier
        message of its subject is still to come back. A message that came back is no
        longer outstanding."""
        held = self._outstanding.get(subject)
        if not held:
            return True
        held.pop(sequence, None)
        now = self._clock()
        for outstanding, forget_at in list(held.items()):
            if forget_at <= now:
                del held[outstanding]
        if not held:
            del self._outstanding[subject]
            return True
        return min(held) > sequence

    @property
    def subjects_held(self) -> int:
        return len(self._outstanding)
