"""Reading `/metrics` the way Prometheus does: with prometheus_client's own parser."""

from __future__ import annotations

from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


def samples(text: str) -> list[Sample]:
    """Every sample of the exposition (a malformed one raises ValueError)."""
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def value(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample `name` with exactly `labels`, None if there is none."""
    for sample in samples(text):
        if sample.name == name and sample.labels == labels:
            return float(sample.value)
    return None


def per_mapping(text: str) -> dict[str, dict[str, float]]:
    """Per mapping (its label; "" for samples without one), each sample's value summed
    over its other labels, named without the `lambda_bridge_` prefix; histogram buckets
    and the state gauge are left out."""
    found: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for sample in samples(text):
        if sample.name.endswith("_bucket") or sample.name.endswith("mapping_state"):
            continue
        mapping = sample.labels.get("mapping", "")
        found[mapping][sample.name.removeprefix("lambda_bridge_")] += float(sample.value)
    return found
