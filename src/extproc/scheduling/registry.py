"""The explicit table of built-in plugin types: kebab-case type → factory(name, params, handle)."""

from __future__ import annotations

from collections.abc import Mapping

from extproc.scheduling.plugin import PluginFactory
from extproc.scheduling.plugins import (
    decision_tree,
    endpoint_capacity_filter,
    has_capacity_filter,
    inflight_scorer,
    kv_cache_scorer,
    least_kv_cache_filter,
    least_queue_filter,
    lora_affinity_filter,
    lora_affinity_scorer,
    low_queue_filter,
    max_score_picker,
    prefill_scorer,
    prefix_cache_scorer,
    queue_scorer,
    random_picker,
    weighted_random_picker,
)

REGISTRY: Mapping[str, PluginFactory] = {
    # filters
    "low-queue-filter": low_queue_filter.factory,
    "lora-affinity-filter": lora_affinity_filter.factory,
    "least-queue-filter": least_queue_filter.factory,
    "least-kv-cache-filter": least_kv_cache_filter.factory,
    "has-capacity-filter": has_capacity_filter.factory,
    "decision-tree": decision_tree.factory,
    "endpoint-capacity-filter": endpoint_capacity_filter.factory,
    # scorers
    "queue-scorer": queue_scorer.factory,
    "kv-cache-utilization-scorer": kv_cache_scorer.factory,
    "lora-affinity-scorer": lora_affinity_scorer.factory,
    "prefix-cache-scorer": prefix_cache_scorer.factory,
    "inflight-scorer": inflight_scorer.factory,
    "prefill-scorer": prefill_scorer.factory,
    # pickers
    "max-score-picker": max_score_picker.factory,
    "random-picker": random_picker.factory,
    "weighted-random-picker": weighted_random_picker.factory,
}
