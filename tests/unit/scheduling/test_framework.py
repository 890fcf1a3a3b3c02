"""The framework and Scheduler: weights, clamping, freshness, fallbacks, subset, admission."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from prometheus_client import generate_latest

from extproc.api.v1alpha2 import Criticality
from extproc.errors import NoEndpoint, PoolSaturated
from extproc.scheduling.context import SchedulingContext
from extproc.scheduling.framework import SchedulingProfile, WeightedScorer
from extproc.scheduling.inflight import InFlight
from extproc.scheduling.plugin import Scorer
from extproc.scheduling.plugins.max_score_picker import MaxScorePicker
from extproc.scheduling.saturation import SaturationConfig, SaturationDetector
from extproc.scheduling.scheduler import Scheduler
from extproc.scraper.snapshot import MetricsStore

from .builders import NOW, FakeDatastore, Pod, make_endpoint, make_request, make_scheduler


class FixedScorer(Scorer):
    """Returns preset scores by endpoint name (a fake implementing the real interface)."""

    plugin_type = "fixed"

    def __init__(self, name: str, scores: dict[str, float]) -> None:
        super().__init__(name)
        self.scores = scores

    def score(self, ctx: SchedulingContext) -> Sequence[float]:
        return [self.scores[e.name] for e in ctx.endpoints]


def _scheduler(
    pods: list[Pod], scorers: list[WeightedScorer], *, fallbacks: int = 0,
    saturation: SaturationConfig | None = None,
) -> Scheduler:  # fmt: skip
    store, inflight = MetricsStore(), InFlight()
    for pod in pods:
        store.put(pod.address, pod.metrics)
    rng = random.Random(0)
    profile = SchedulingProfile("p", filters=[], scorers=scorers, picker=MaxScorePicker("m", rng))
    return Scheduler(
        endpoints=FakeDatastore(pods).endpoints, store=store, inflight=inflight, profile=profile,
        saturation=SaturationDetector(saturation), rng=rng, fallbacks=fallbacks, clock=lambda: NOW,
    )  # fmt: skip


PODS = [make_endpoint("a"), make_endpoint("b"), make_endpoint("c")]


@pytest.mark.parametrize(
    ("scorers", "want"),
    [
        pytest.param(
            [WeightedScorer(FixedScorer("x", {"a": 1.0, "b": 0.0, "c": 0.2}), 1.0),
             WeightedScorer(FixedScorer("y", {"a": 0.0, "b": 1.0, "c": 0.2}), 3.0)],
            "b", id="weight-decides",
        ),
        pytest.param(
            [WeightedScorer(FixedScorer("x", {"a": 1.0, "b": 0.0, "c": 0.2}), 3.0),
             WeightedScorer(FixedScorer("y", {"a": 0.0, "b": 1.0, "c": 0.2}), 1.0)],
            "a", id="weight-decides-other-way",
        ),
        pytest.param(
            [WeightedScorer(FixedScorer("x", {"a": 50.0, "b": 1.0, "c": float("nan")}), 1.0),
             WeightedScorer(FixedScorer("y", {"a": 0.0, "b": 0.5, "c": 0.9}), 1.0)],
            "b", id="clamped-to-unit-nan-is-zero",
        ),
        pytest.param(
            [WeightedScorer(FixedScorer("x", {"a": -5.0, "b": 0.0, "c": 0.0}), 1.0),
             WeightedScorer(FixedScorer("y", {"a": 0.1, "b": 0.0, "c": 0.0}), 1.0)],
            "a", id="negative-clamped-to-zero",
        ),
    ],
)  # fmt: skip
def test_weights_and_clamping(scorers: list[WeightedScorer], want: str) -> None:
    assert _scheduler(PODS, scorers).pick(make_request()).primary.name == want


def test_stale_endpoints_never_picked_while_fresh_exist() -> None:
    pods = [make_endpoint("stale", fresh=False), make_endpoint("busy", waiting=4, kv=0.7)]
    scheduler, _ = make_scheduler(pods, fallbacks=3)
    for _ in range(20):
        assert [e.name for e in scheduler.pick(make_request()).endpoints] == ["busy"]


def test_unhealthy_endpoint_is_not_fresh() -> None:
    pods = [make_endpoint("a"), make_endpoint("b", waiting=4)]
    scheduler, h = make_scheduler(pods)
    h.store.mark_unhealthy(pods[0].address)
    assert scheduler.pick(make_request()).primary.name == "b"


def test_without_fresh_metrics_falls_back_to_inflight() -> None:
    pods = [make_endpoint("a", fresh=False, inflight=3), make_endpoint("b", fresh=False),
            make_endpoint("c", fresh=False, inflight=1)]  # fmt: skip
    scheduler, _ = make_scheduler(pods, fallbacks=2)
    assert [e.name for e in scheduler.pick(make_request()).endpoints] == ["b", "c", "a"]


def test_fallbacks_ranked_by_score() -> None:
    pods = [
        make_endpoint("q9", waiting=9, kv=0.5),
        make_endpoint("q0", waiting=0, kv=0.1),
        make_endpoint("q3", waiting=3, kv=0.2),
        make_endpoint("q5", waiting=5, kv=0.3),
    ]
    scheduler, _ = make_scheduler(pods, "reference-default", fallbacks=2)
    assert [e.name for e in scheduler.pick(make_request()).endpoints] == ["q0", "q3", "q5"]


def test_fallbacks_topped_up_after_filters() -> None:
    pods = [make_endpoint("a", waiting=0), make_endpoint("b", waiting=50)]
    scheduler, _ = make_scheduler(pods, "legacy-v0.3", fallbacks=1)
    picked = scheduler.pick(make_request(criticality="Critical")).endpoints
    assert [e.name for e in picked] == ["a", "b"]


def test_subset_hint_is_honoured() -> None:
    pods = [make_endpoint("best"), make_endpoint("worse", waiting=3, kv=0.5)]
    scheduler, _ = make_scheduler(pods)
    assert scheduler.pick(make_request(subset=[pods[1].endpoint.ip])).primary.name == "worse"
    with pytest.raises(NoEndpoint):
        scheduler.pick(make_request(subset=["192.0.2.1"]))


@pytest.mark.parametrize(
    ("criticality", "shed"),
    [pytest.param("Standard", True, id="standard-shed"),
     pytest.param("Sheddable", True, id="sheddable-shed"),
     pytest.param("Critical", False, id="critical-never-shed")],
)  # fmt: skip
@pytest.mark.parametrize("profile", ["default", "reference-default", "legacy-v0.3"])
def test_saturation(criticality: Criticality, shed: bool, profile: str) -> None:
    pods = [make_endpoint("a", waiting=6), make_endpoint("b", kv=0.81)]
    scheduler, _ = make_scheduler(pods, profile)
    if shed:
        with pytest.raises(PoolSaturated):
            scheduler.pick(make_request(criticality=criticality))
    else:
        assert scheduler.pick(make_request(criticality=criticality)).primary


def test_saturation_thresholds_configurable() -> None:
    pods = [make_endpoint("a", waiting=6)]
    scheduler = _scheduler(pods, [], saturation=SaturationConfig(queue_threshold=10))
    assert scheduler.pick(make_request()).primary.name == "a"
    blind = _scheduler([make_endpoint("x", fresh=False)], [],
                       saturation=SaturationConfig(shed_without_metrics=True))  # fmt: skip
    with pytest.raises(PoolSaturated):
        blind.pick(make_request())


def test_cycle_and_plugins_are_timed() -> None:
    scheduler, h = make_scheduler(PODS)
    scheduler.pick(make_request(prompt="x" * 200))
    text = generate_latest(h.metrics.registry).decode()
    assert "inference_extension_scheduler_e2e_duration_seconds_count 1.0" in text
    for point, kind in [
        ("Scorer", "queue-scorer"),
        ("Scorer", "prefix-cache-scorer"),
        ("Picker", "max-score-picker"),
        ("PostPick", "prefix-cache-scorer"),
    ]:
        label = f'extension_point="{point}",plugin_name="{kind}",plugin_type="{kind}"'
        assert f"inference_extension_plugin_duration_seconds_count{{{label}}} 1.0" in text


def test_post_pick_updates_prefix_index_but_not_inflight() -> None:
    pods = [make_endpoint("a"), make_endpoint("b")]
    scheduler, h = make_scheduler(pods, "reference-default")
    prompt = "y" * 4096
    first = scheduler.pick(make_request(prompt=prompt)).primary
    assert h.inflight.total() == 0
    for _ in range(10):
        assert scheduler.pick(make_request(prompt=prompt)).primary == first
