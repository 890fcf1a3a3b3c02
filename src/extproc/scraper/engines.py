"""Metric-family names per model-server engine (vLLM, SGLang, TensorRT-LLM), with ordered
fallbacks.

A name may carry one label selector, ``family{label=value}``: only that family's series with
that label value are read (Triton's TensorRT-LLM backend puts several quantities in one family).
The names follow the reference EPP's model-server protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Engine = Literal["vllm", "sglang", "trtllm"]
ENGINES: tuple[Engine, ...] = ("vllm", "sglang", "trtllm")


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricNames:
    """Family names to read. Tuples are ordered: the first family present wins (new, legacy)."""

    waiting: tuple[str, ...]
    running: tuple[str, ...]
    kv_usage: tuple[str, ...]
    lora_info: tuple[str, ...] = ()
    # An info family whose labels give the KV-cache geometry, and those labels' names.
    cache_config: tuple[str, ...] = ()
    cache_config_labels: tuple[str, str] = ("block_size", "num_gpu_blocks")
    # Or gauges whose values give it (when the info family is absent).
    block_size: tuple[str, ...] = ()
    num_blocks: tuple[str, ...] = ()
    prefix_queries: tuple[str, ...] = ()
    prefix_hits: tuple[str, ...] = ()
    # Derived when none of the families above is present: waiting = total - running, and
    # KV use = used / capacity (older servers export only the parts).
    waiting_from: tuple[str, str] | None = None
    kv_usage_from: tuple[str, str] | None = None

    def all_families(self) -> tuple[str, ...]:
        return (
            *self.waiting, *self.running, *self.kv_usage, *self.lora_info, *self.cache_config,
            *self.block_size, *self.num_blocks, *self.prefix_queries, *self.prefix_hits,
            *(self.waiting_from or ()), *(self.kv_usage_from or ()),
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

# With priority scheduling the queue gauges also carry a per-priority breakdown of the
# `priority=""` total: read the total where it exists. Newer SGLang exports the KV-cache
# geometry as gauges; older releases as an info family's labels.
SGLANG = MetricNames(
    waiting=('sglang:num_queue_reqs{priority=""}', "sglang:num_queue_reqs"),
    running=('sglang:num_running_reqs{priority=""}', "sglang:num_running_reqs"),
    kv_usage=("sglang:token_usage",),
    cache_config=("sglang:cache_config_info",),
    cache_config_labels=("page_size", "num_pages"),
    block_size=("sglang:page_size",),
    num_blocks=("sglang:num_pages",),
)

# trtllm-serve's names first (its Prometheus page is at /prometheus/metrics: `--metrics-path`),
# then the Triton TensorRT-LLM backend's batch-manager gauges. Backends built before `waiting`
# and `fraction` existed export only their parts: active and scheduled requests, used and
# max blocks.
TRTLLM = MetricNames(
    waiting=("trtllm_num_requests_waiting", "nv_trt_llm_request_metrics{request_type=waiting}"),
    running=(
        "trtllm_num_requests_running",
        "nv_trt_llm_request_metrics{request_type=scheduled}",
    ),
    kv_usage=(
        "trtllm_kv_cache_utilization",
        "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=fraction}",
    ),
    block_size=(
        "trtllm_kv_cache_tokens_per_block",
        "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=tokens_per}",
    ),
    num_blocks=(
        "trtllm_kv_cache_max_blocks",
        "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=max}",
    ),
    waiting_from=(
        "nv_trt_llm_request_metrics{request_type=active}",
        "nv_trt_llm_request_metrics{request_type=scheduled}",
    ),
    kv_usage_from=(
        "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=used}",
        "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=max}",
    ),
)

_BY_ENGINE: dict[Engine, MetricNames] = {"vllm": VLLM, "sglang": SGLANG, "trtllm": TRTLLM}


def metric_names(engine: Engine) -> MetricNames:
    return _BY_ENGINE[engine]
