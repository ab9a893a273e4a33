"""Metric families an invoker contributes are exposed with the mappings' ones: one HELP
and TYPE per name however many invokers give it, labels escaped, histograms in full, and
found through wrappers such as LimitedInvoker."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from bridge.ops.exposition import render
from bridge.ops.metrics import Histogram, add_histogram, contributed
from tests.exposition import value


class Contributing:
    def __init__(self, function: str, value: float) -> None:
        self.function, self.value = function, value

    def metrics(self) -> list[Metric]:
        family = CounterMetricFamily("lambda_bridge_widgets_total", "Widgets.", labels=["function"])
        family.add_metric([self.function], self.value)
        return [family]


class Wrapper:
    def __init__(self, inner: object) -> None:
        self.inner = inner


def test_contributed_families_are_merged_and_rendered() -> None:
    histogram = Histogram((0.5,))
    histogram.observe(0.25)
    families = contributed([Contributing("a", 1), Wrapper(Contributing('b"', 2.5)), object()])
    init = HistogramMetricFamily("lambda_bridge_init_seconds", "Init.", labels=["function"])
    add_histogram(init, ["a"], histogram)
    families.append(init)
    text = render([], families=families).decode()
    assert text.splitlines().count("# TYPE lambda_bridge_widgets_total counter") == 1
    assert value(text, "lambda_bridge_widgets_total", function="a") == 1
    assert value(text, "lambda_bridge_widgets_total", function='b"') == 2.5
    assert value(text, "lambda_bridge_init_seconds_bucket", function="a", le="0.5") == 1
    assert value(text, "lambda_bridge_init_seconds_bucket", function="a", le="+Inf") == 1
    assert value(text, "lambda_bridge_init_seconds_sum", function="a") == 0.25
    assert value(text, "lambda_bridge_init_seconds_count", function="a") == 1
    # Merging copies: what an invoker gave is left as it was.
    assert len(families[0].samples) == 1
