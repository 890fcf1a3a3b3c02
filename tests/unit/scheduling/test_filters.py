"""Table-driven tests of the v0.3 filters and the decision tree."""

from __future__ import annotations

import random
from typing import Any

import pytest

from extproc.api.v1alpha2 import Criticality
from extproc.config.strict import Fields
from extproc.errors import PoolSaturated
from extproc.scheduling.config import load_profile
from extproc.scheduling.context import PluginHandle
from extproc.scheduling.factory import instantiate
from extproc.scheduling.plugin import Filter
from extproc.scheduling.registry import REGISTRY

from .builders import Pod, make_context, make_endpoint, make_request


def _filter(kind: str, params: dict[str, Any] | None = None) -> Filter:
    plugin = REGISTRY[kind](kind, Fields(params or {}, "test"), PluginHandle(random.Random(0)))
    assert isinstance(plugin, Filter)
    return plugin


def _names(pods: list[Pod], kept: Any) -> list[str]:
    return [pods[i].endpoint.name for i in kept]


@pytest.mark.parametrize(
    ("kind", "params", "pods", "want"),
    [
        pytest.param(
            "low-queue-filter", {},
            [make_endpoint("a", waiting=127), make_endpoint("b", waiting=128)], ["a"],
            id="low-queue-below-128",
        ),
        pytest.param(
            "low-queue-filter", {"threshold": 5},
            [make_endpoint("a", waiting=4), make_endpoint("b", waiting=5)], ["a"],
            id="low-queue-threshold-param",
        ),
        pytest.param(
            "has-capacity-filter", {},
            [make_endpoint("a", waiting=5, kv=0.8), make_endpoint("b", waiting=6),
             make_endpoint("c", kv=0.81)], ["a"],
            id="has-capacity-inclusive-thresholds",
        ),
        pytest.param(
            "least-queue-filter", {},
            [make_endpoint("a", waiting=0), make_endpoint("b", waiting=3),
             make_endpoint("c", waiting=4), make_endpoint("d", waiting=12)], ["a", "b"],
            id="least-queue-band-min-plus-range-over-n",
        ),
        pytest.param(
            "least-kv-cache-filter", {},
            [make_endpoint("a", kv=0.1), make_endpoint("b", kv=0.9)], ["a"],
            id="least-kv-band",
        ),
        pytest.param(
            "lora-affinity-filter", {"probability": 1.0},
            [make_endpoint("a", loras=["sql"], max_lora=1),
             make_endpoint("b", max_lora=1), make_endpoint("c", loras=["x"], max_lora=1)],
            ["a"], id="lora-affinity-active",
        ),
        pytest.param(
            "lora-affinity-filter", {"probability": 0.0},
            [make_endpoint("a", loras=["sql"], max_lora=1),
             make_endpoint("b", max_lora=1), make_endpoint("c", loras=["x"], max_lora=1)],
            ["b"], id="lora-affinity-exploration-takes-free-slot",
        ),
        pytest.param(
            "lora-affinity-filter", {},
            [make_endpoint("b", max_lora=1), make_endpoint("c", loras=["x"], max_lora=1)],
            ["b"], id="lora-affinity-no-active-free-slot",
        ),
    ],
)  # fmt: skip
def test_filters(kind: str, params: dict[str, Any], pods: list[Pod], want: list[str]) -> None:
    ctx = make_context(pods, make_request(target="sql"))
    assert _names(pods, _filter(kind, params).filter(ctx)) == want


def _tree() -> Filter:
    plugins = instantiate(load_profile("legacy-v0.3"), random.Random(0))
    tree = plugins["decision-tree"]
    assert isinstance(tree, Filter)
    return tree


@pytest.mark.parametrize(
    ("criticality", "pods", "want"),
    [
        pytest.param(
            "Critical",
            [make_endpoint("a", waiting=200), make_endpoint("b", waiting=10),
             make_endpoint("c", waiting=50)], ["b"],
            id="critical-low-queue-then-least-queue",
        ),
        pytest.param(
            "Critical",
            [make_endpoint("a", waiting=300, kv=0.9), make_endpoint("b", waiting=300, kv=0.1)],
            ["b"], id="critical-low-queue-empties-passes-input-on",
        ),
        pytest.param(
            "Standard",
            [make_endpoint("a", waiting=2, kv=0.5), make_endpoint("b", waiting=9),
             make_endpoint("c", waiting=1, kv=0.2)], ["c"],
            id="standard-has-capacity-then-least",
        ),
    ],
)  # fmt: skip
def test_decision_tree(criticality: Criticality, pods: list[Pod], want: list[str]) -> None:
    ctx = make_context(pods, make_request(criticality=criticality))
    assert _names(pods, _tree().filter(ctx)) == want


def test_decision_tree_sheds_non_critical_without_capacity() -> None:
    pods = [make_endpoint("a", waiting=6), make_endpoint("b", kv=0.9)]
    with pytest.raises(PoolSaturated):
        _tree().filter(make_context(pods, make_request(criticality="Sheddable")))
    kept = _tree().filter(make_context(pods, make_request(criticality="Critical")))
    assert kept
