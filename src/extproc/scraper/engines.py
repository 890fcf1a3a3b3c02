"""Metric-family names per model-server engine (vLLM, SGLang), each with ordered fallbacks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Engine = Literal["vllm", "sglang"]
ENGINES: tuple[Engine, ...] = ("vllm", "sglang")


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricNames:
    """Family names to read. Tuples are ordered: the first family present wins (new, legacy)."""

    waiting: tuple[str, ...]
    running: tuple[str, ...]
    kv_usage: tuple[str, ...]
    lora_info: tuple[str, ...] = ()
    cache_config: tuple[str, ...] = ()
    prefix_queries: tuple[str, ...] = ()
    prefix_hits: tuple[str, ...] = ()

    def all_families(self) -> tuple[str, ...]:
        return (
            *self.waiting, *self.running, *self.kv_usage, *self.lora_info, *self.cache_config,
            *self.prefix_queries, *self.prefix_hits,
        )  # fmt: skip


VLLM = MetricNames(
    waiting=("vllm:num_requests_waiting",),
    running=("vllm:num_requests_running",),
    # vllm:gpu_cache_usage_perc was removed in vLLM 0.12.
    kv_usage=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    lora_info=("vllm:lora_requests_info",),
    cache_config=("vllm:cache_config_info",),
    prefix_queries=("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"),
    prefix_hits=("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),
)

SGLANG = MetricNames(
    waiting=("sglang:num_queue_reqs",),
    running=("sglang:num_running_reqs",),
    kv_usage=("sglang:token_usage",),
)


def metric_names(engine: Engine) -> MetricNames:
    return VLLM if engine == "vllm" else SGLANG
