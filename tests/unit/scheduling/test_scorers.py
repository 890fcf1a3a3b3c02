"""Table-driven tests of the queue, KV, in-flight and LoRA-affinity scorers."""

from __future__ import annotations

import random

import pytest

from extproc.config.strict import Fields
from extproc.scheduling.context import PluginHandle
from extproc.scheduling.plugin import Scorer
from extproc.scheduling.registry import REGISTRY

from .builders import Pod, make_context, make_endpoint, make_request


def _scorer(kind: str) -> Scorer:
    plugin = REGISTRY[kind](kind, Fields({}, "test"), PluginHandle(random.Random(0)))
    assert isinstance(plugin, Scorer)
    return plugin


@pytest.mark.parametrize(
    ("kind", "pods", "want"),
    [
        pytest.param(
            "queue-scorer",
            [make_endpoint("a", waiting=0), make_endpoint("b", waiting=5),
             make_endpoint("c", waiting=10)],
            [1.0, 0.5, 0.0], id="queue-min-max",
        ),
        pytest.param(
            "queue-scorer", [make_endpoint("a", waiting=3), make_endpoint("b", waiting=3)],
            [1.0, 1.0], id="queue-all-equal-is-1",
        ),
        pytest.param("queue-scorer", [make_endpoint("a", waiting=9)], [1.0], id="queue-single"),
        pytest.param(
            "kv-cache-utilization-scorer",
            [make_endpoint("a", kv=0.0), make_endpoint("b", kv=0.25), make_endpoint("c", kv=1.0)],
            [1.0, 0.75, 0.0], id="kv-one-minus",
        ),
        pytest.param(
            "inflight-scorer",
            [make_endpoint("a", inflight=2), make_endpoint("b", inflight=0),
             make_endpoint("c", inflight=4)],
            [0.5, 1.0, 0.0], id="inflight-min-max",
        ),
        pytest.param(
            "inflight-scorer", [make_endpoint("a"), make_endpoint("b")], [1.0, 1.0],
            id="inflight-all-idle",
        ),
    ],
)  # fmt: skip
def test_load_scorers(kind: str, pods: list[Pod], want: list[float]) -> None:
    assert list(_scorer(kind).score(make_context(pods))) == pytest.approx(want)


@pytest.mark.parametrize(
    ("pod", "want"),
    [
        pytest.param(make_endpoint("p", loras=["sql"], max_lora=1), 1.0, id="active"),
        pytest.param(make_endpoint("p", loras=["x"], max_lora=2), 0.8, id="free-slot"),
        pytest.param(
            make_endpoint("p", loras=["x"], waiting_loras=["sql"], max_lora=1), 0.6, id="waiting"
        ),
        pytest.param(make_endpoint("p", loras=["x", "y"], max_lora=2), 0.0, id="full"),
        pytest.param(make_endpoint("p"), 0.0, id="no-lora-info"),
        pytest.param(
            make_endpoint("p", loras=["x"], waiting_loras=["sql"], max_lora=2),
            0.8,
            id="free-slot-beats-waiting",
        ),
    ],
)
def test_lora_affinity_scorer(pod: Pod, want: float) -> None:
    ctx = make_context([pod], make_request(model="base", target="sql"))
    assert list(_scorer("lora-affinity-scorer").score(ctx)) == [want]
