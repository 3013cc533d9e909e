"""Reading Prometheus text in tests: `MetricValues(text).get(name, **labels)`."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


class MetricValues:
    """Every sample of one scrape, by name and labels."""

    def __init__(self, text: str) -> None:
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def get(self, name: str, **labels: str) -> float:
        """The sample's value; 0 when the scrape does not have it (a series not yet made)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def label_values(self, name: str, label: str) -> set[str]:
        return {
            dict(labels)[label]
            for sample_name, labels in self.samples
            if sample_name == name and label in dict(labels)
        }
