"""Exposition of one pod's metrics under vLLM's names, parsed back with prometheus_client."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from extproc.sim.metrics import (
    MAX_LORA_INFO_SERIES,
    EngineStats,
    GaugeSnapshot,
    Histogram,
    MetricsExporter,
)

MODEL = "/model/llama2"


def make_exporter(*, legacy: bool = False) -> MetricsExporter:
    return MetricsExporter(
        model_name=MODEL, block_size=16, num_gpu_blocks=1000, max_loras=4, legacy_kv_name=legacy
    )


def gauges(running: tuple[str, ...] = (), waiting: tuple[str, ...] = ()) -> GaugeSnapshot:
    return GaugeSnapshot(
        running=3, waiting=2, kv_usage=0.25, running_loras=running, waiting_loras=waiting
    )


def samples(page: bytes) -> list[Sample]:
    return [s for family in text_string_to_metric_families(page.decode()) for s in family.samples]


def value(page: bytes, name: str, **labels: str) -> float:
    for sample in samples(page):
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    raise KeyError(name)


def test_gauges_counters_and_cache_info() -> None:
    stats = EngineStats()
    stats.prefix_queries, stats.prefix_hits, stats.preemptions = 100, 48, 2
    stats.prompt_tokens, stats.generation_tokens = 100, 7
    stats.success["length"] = 1
    page = make_exporter().render(gauges(), stats)
    assert value(page, "vllm:num_requests_running", model_name=MODEL) == 3
    assert value(page, "vllm:num_requests_waiting", model_name=MODEL) == 2
    assert value(page, "vllm:kv_cache_usage_perc", model_name=MODEL) == 0.25
    assert value(page, "vllm:cache_config_info", block_size="16", num_gpu_blocks="1000") == 1
    assert value(page, "vllm:prefix_cache_queries_total") == 100
    assert value(page, "vllm:prefix_cache_hits_total") == 48
    assert value(page, "vllm:num_preemptions_total") == 2
    assert value(page, "vllm:prompt_tokens_total") == 100
    assert value(page, "vllm:generation_tokens_total") == 7
    assert value(page, "vllm:request_success_total", finished_reason="length") == 1
    assert value(page, "vllm:request_success_total", finished_reason="abort") == 0
    assert b"gpu_cache_usage_perc" not in page


def test_legacy_kv_name() -> None:
    page = make_exporter(legacy=True).render(gauges(), EngineStats())
    assert value(page, "vllm:gpu_cache_usage_perc") == 0.25
    assert b"vllm:kv_cache_usage_perc" not in page


def test_histograms_are_cumulative_with_inf_count_and_sum() -> None:
    stats = EngineStats()
    for v in (0.003, 0.003, 0.2, 9999.0):
        stats.ttft.observe(v)
    page = make_exporter().render(gauges(), stats)
    name = "vllm:time_to_first_token_seconds_bucket"
    assert value(page, name, le="0.001") == 0
    assert value(page, name, le="0.005") == 2
    assert value(page, name, le="0.25") == 3
    assert value(page, name, le="+Inf") == 4
    assert value(page, "vllm:time_to_first_token_seconds_count") == 4
    assert value(page, "vllm:time_to_first_token_seconds_sum") == pytest.approx(9999.206)
    for hist in ("inter_token_latency", "e2e_request_latency", "request_queue_time"):
        assert value(page, f"vllm:{hist}_seconds_count", model_name=MODEL) == 0


def test_bucket_boundary_is_inclusive() -> None:
    hist = Histogram((1.0, 2.0))
    hist.observe(1.0)
    hist.observe(2.5)
    assert hist.counts == [1, 0, 1]


def test_lora_info_keeps_old_series_and_stamps_the_current_one_newest() -> None:
    exporter = make_exporter()
    exporter.render(gauges(running=("a",)), EngineStats())
    time.sleep(0.002)
    page = exporter.render(gauges(running=("a", "b"), waiting=("c",)), EngineStats())
    series = [s for s in samples(page) if s.name == "vllm:lora_requests_info"]
    assert len(series) == 2
    newest = max(series, key=lambda s: s.value)
    assert newest.labels == {
        "max_lora": "4",
        "running_lora_adapters": "a,b",
        "waiting_lora_adapters": "c",
    }
    assert newest.value == pytest.approx(time.time(), abs=5)


def test_lora_info_series_are_bounded() -> None:
    exporter = make_exporter()
    for i in range(MAX_LORA_INFO_SERIES + 5):
        page = exporter.render(gauges(running=(f"a{i}",)), EngineStats())
    assert sum(s.name == "vllm:lora_requests_info" for s in samples(page)) == MAX_LORA_INFO_SERIES


def test_label_values_are_escaped() -> None:
    exporter = MetricsExporter(model_name='we"ird\\', block_size=16, num_gpu_blocks=1, max_loras=1)
    page = exporter.render(gauges(), EngineStats())
    assert value(page, "vllm:num_requests_running", model_name='we"ird\\') == 3
