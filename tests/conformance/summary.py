"""The conformance summary printed at the end of a run: how many of AWS's recorded
cases matched, per source. A plugin of the top-level conftest, so that under xdist the
controller, which sees every report, prints it."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

_OUTCOMES: dict[str, Counter[str]] = {}


def _source_of(nodeid: str) -> str | None:
    if "tests/conformance/test_" not in nodeid:
        return None
    return nodeid.split("tests/conformance/test_", 1)[1].split(".py", 1)[0]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    source = _source_of(report.nodeid)
    if source is None:
        return
    counts = _OUTCOMES.setdefault(source, Counter())
    if report.when == "call":
        if hasattr(report, "wasxfail"):
            counts["known difference"] += 1
        else:
            counts["matched" if report.passed else "differs"] += 1
    elif report.when == "setup" and report.skipped:
        counts["skipped"] += 1
    elif report.when == "setup" and report.failed:
        counts["differs"] += 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _OUTCOMES:
        return
    terminalreporter.section("conformance with AWS's recordings")
    total: Counter[str] = Counter()
    for source in sorted(_OUTCOMES):
        counts = _OUTCOMES[source]
        total.update(counts)
        terminalreporter.write_line(_line(source, counts))
    terminalreporter.write_line(_line("all", total))


def _line(source: str, counts: Counter[str]) -> str:
    compared = counts["matched"] + counts["differs"] + counts["known difference"]
    return (
        f"{source:>9}: {counts['matched']} matched of {compared} compared"
        f" ({counts['known difference']} known differences, {counts['differs']} differ),"
        f" {counts['skipped']} skipped"
    )
