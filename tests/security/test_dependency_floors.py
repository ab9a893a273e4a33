"""No dependency version with a published advisory can be installed: pyproject.toml's
floors lie at or past each fix, the environment running the tests meets them, and the
container image's lock pins versions past them too."""

from __future__ import annotations

from importlib.metadata import version

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.unit.test_deploy_locks import LOCK, locked, project

# Published advisories of the direct dependencies, as (advisory, first fixed version);
# the sources are cited beside the floors in pyproject.toml. structlog and watchdog
# have none published.
ADVISORIES: dict[str, list[tuple[str, str]]] = {
    "pydantic": [("CVE-2024-3772", "2.4.0")],
    "pyyaml": [("CVE-2020-1747", "5.3.1"), ("CVE-2020-14343", "5.4")],
    "orjson": [("CVE-2024-27454", "3.9.15"), ("CVE-2025-67221", "3.11.6")],
    "aiohttp": [
        ("CVE-2026-22815", "3.13.4"),
        ("CVE-2026-34525", "3.13.4"),
        ("CVE-2026-50269", "3.14.0"),
        ("CVE-2026-54273", "3.14.1"),
        ("CVE-2026-128126", "3.14.4"),
        ("PYSEC-2026-4371", "3.14.4"),
    ],
    "aiokafka": [("PVE-2023-62410", "0.4.0")],
    "redis": [("CVE-2023-28858", "4.5.4"), ("CVE-2023-28859", "4.5.4")],
}


def requirements() -> list[Requirement]:
    """Every requirement pyproject.toml states: the package's and each extra's."""
    metadata = project()["project"]
    texts = list(metadata["dependencies"])
    for extra in metadata["optional-dependencies"].values():
        texts += extra
    return [Requirement(text) for text in texts]


def floor(requirement: Requirement) -> Version | None:
    bounds = [Version(spec.version) for spec in requirement.specifier if spec.operator == ">="]
    return max(bounds, default=None)


def test_every_floor_excludes_the_versions_with_advisories() -> None:
    """Each requirement of a package with advisories has a `>=` floor at or past the
    newest fix, so no version before it satisfies the requirement."""
    stated = [r for r in requirements() if canonicalize_name(r.name) in ADVISORIES]
    assert {canonicalize_name(r.name) for r in stated} == set(ADVISORIES)
    for requirement in stated:
        fixes = ADVISORIES[canonicalize_name(requirement.name)]
        newest_fix = max(Version(fixed) for _, fixed in fixes)
        lowest = floor(requirement)
        assert lowest is not None and lowest >= newest_fix, (str(requirement), fixes)


def test_the_installed_versions_meet_the_floors() -> None:
    """The environment the tests run in (the package with its test extra) holds versions
    every stated requirement allows."""
    for requirement in requirements():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        installed = version(requirement.name)
        assert requirement.specifier.contains(installed, prereleases=True), (
            str(requirement),
            installed,
        )


def test_the_image_lock_pins_versions_past_every_advisory() -> None:
    """The container image's exact versions, transitive ones included, are past the
    fixes, whatever the floors say."""
    entries = locked(LOCK)
    for name, fixes in ADVISORIES.items():
        pinned, _ = entries[name]
        for advisory, fixed in fixes:
            assert pinned >= Version(fixed), (name, advisory, pinned)
