"""Metric families an invoker contributes are rendered with the mappings' ones: one HELP
and TYPE per name however many invokers give it, labels escaped, histograms in full, and
found through wrappers such as LimitedInvoker."""

from __future__ import annotations

from bridge.metrics import Family, Histogram, contributed, render


class Contributing:
    def __init__(self, function: str, value: float) -> None:
        self.function, self.value = function, value

    def metrics(self) -> list[Family]:
        return [
            Family(
                "widgets_total", "counter", "Widgets.", [({"function": self.function}, self.value)]
            )
        ]


class Wrapper:
    def __init__(self, inner: object) -> None:
        self.inner = inner


def test_contributed_families_are_merged_and_rendered() -> None:
    histogram = Histogram((0.5,))
    histogram.observe(0.25)
    families = contributed([Contributing("a", 1), Wrapper(Contributing('b"', 2.5)), object()])
    families.append(Family("init_seconds", "histogram", "Init.", [({"function": "a"}, histogram)]))
    lines = render([], families=families).splitlines()
    assert lines.count("# TYPE lambda_bridge_widgets_total counter") == 1
    assert 'lambda_bridge_widgets_total{function="a"} 1' in lines
    assert 'lambda_bridge_widgets_total{function="b\\""} 2.5' in lines
    assert 'lambda_bridge_init_seconds_bucket{function="a",le="0.5"} 1' in lines
    assert 'lambda_bridge_init_seconds_bucket{function="a",le="+Inf"} 1' in lines
    assert 'lambda_bridge_init_seconds_sum{function="a"} 0.25' in lines
    assert 'lambda_bridge_init_seconds_count{function="a"} 1' in lines
