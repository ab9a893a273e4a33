"""The fault suite's seed and scale.

`LAMBDA_BRIDGE_FAULT_SEED` replays a run (every random choice of a scenario comes from
it: kill moments, outage lengths, partitions, the soak handler's failures; the timing
of the processes themselves cannot be replayed). `LAMBDA_BRIDGE_FAULT_SCALE` (1 = CI)
makes the scenarios larger and longer; `LAMBDA_BRIDGE_FAULT_REPORT` names a file to
which each scenario appends its figures as one JSON line.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest


class FaultRun:
    def __init__(self, seed: int, scale: float, nodeid: str) -> None:
        self.seed = seed
        self.scale = scale
        self.nodeid = nodeid

    def rng(self, purpose: str) -> random.Random:
        """A random stream of its own per purpose, so that one part (the producer thread,
        say) drawing more or less often does not shift another's choices."""
        return random.Random(f"{self.seed}:{purpose}")

    def scaled(self, value: float) -> int:
        return max(1, round(value * self.scale))

    @property
    def replay(self) -> str:
        return (
            f"LAMBDA_BRIDGE_FAULT_SEED={self.seed} LAMBDA_BRIDGE_FAULT_SCALE={self.scale:g} "
            f"python -m pytest '{self.nodeid}'"
        )

    def report(self, figures: dict[str, Any]) -> None:
        line = json.dumps({"test": self.nodeid, "seed": self.seed, "scale": self.scale, **figures})
        print(f"FAULT FIGURES {line}")
        target = os.environ.get("LAMBDA_BRIDGE_FAULT_REPORT")
        if target:
            with Path(target).open("a") as out:
                out.write(line + "\n")

    def verdict(self, problems: list[str]) -> None:
        """Fail with every problem found, the seed and the command that replays it."""
        if problems:
            listed = "\n".join(f"- {problem}" for problem in problems[:40])
            more = f"\n(and {len(problems) - 40} more)" if len(problems) > 40 else ""
            raise AssertionError(
                f"FAULT SEED={self.seed}: {len(problems)} problem(s)\n{listed}{more}\n"
                f"replay: {self.replay}"
            )


@pytest.fixture
def fault(request: pytest.FixtureRequest) -> FaultRun:
    given = os.environ.get("LAMBDA_BRIDGE_FAULT_SEED")
    seed = int(given) if given else random.SystemRandom().randrange(1, 1_000_000)
    scale = float(os.environ.get("LAMBDA_BRIDGE_FAULT_SCALE", "1"))
    run = FaultRun(seed, scale, request.node.nodeid)
    print(f"FAULT SEED={seed} ({run.replay})")
    return run
