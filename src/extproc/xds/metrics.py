"""What operators see of the xDS server: connected Envoys, what they were sent, accepted and
rejected, and what is served now. Everything is read at scrape time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from extproc.metrics import ByLabel
from extproc.xds.cache import ResourceCache, short_type


@dataclass(slots=True)
class StreamCounts:
    """Per type URL, over every stream: responses sent, and Envoy's answers to them. Streams
    run on one event loop, so plain counters do."""

    sent: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)


class XdsMetrics:
    """The series of `extproc xds`, on a registry of their own."""

    def __init__(
        self, cache: ResourceCache, counts: StreamCounts, open_streams: Callable[[], int]
    ) -> None:
        self.registry = r = CollectorRegistry()
        streams = Gauge("extproc_xds_streams", "Open ADS streams (connected Envoys).", registry=r)
        streams.set_function(open_streams)

        def by_type(counter: Counter[str]) -> Callable[[], Mapping[str, float]]:
            return lambda: {short_type(t): float(n) for t, n in counter.items()}

        for name, documentation, counter in (
            ("extproc_xds_responses", "Discovery responses sent, per type.", counts.sent),
            ("extproc_xds_acks", "Responses Envoy accepted (ACK), per type.", counts.accepted),
            ("extproc_xds_nacks", "Responses Envoy rejected (NACK), per type.", counts.rejected),
        ):
            r.register(ByLabel(CounterMetricFamily, name, documentation, "type", by_type(counter)))

        def resources() -> dict[str, float]:
            out = {}
            for type_url in cache.versions():
                snap = cache.get(type_url)
                out[short_type(type_url)] = float(len(snap.resources)) if snap else 0.0
            return out

        r.register(
            ByLabel(
                GaugeMetricFamily, "extproc_xds_resources", "Resources served now, per type.",
                "type", resources,
            )
        )  # fmt: skip
        r.register(_Versions(cache))


class _Versions(Collector):
    """`extproc_xds_version_info{type,version} 1`: the version served now, to compare with the
    `version_info` Envoy reports (its admin `/config_dump`)."""

    def __init__(self, cache: ResourceCache) -> None:
        self._cache = cache

    @staticmethod
    def _new() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "extproc_xds_version_info",
            "The version served now, per type (value 1).",
            labels=("type", "version"),
        )

    def describe(self) -> Iterator[Metric]:
        yield self._new()

    def collect(self) -> Iterator[Metric]:
        family = self._new()
        for type_url, version in sorted(self._cache.versions().items()):
            family.add_metric((short_type(type_url), version), 1.0)
        yield family
