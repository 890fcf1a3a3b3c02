"""Pages of other releases of the engines than the captured ones in testdata/: what changed
between versions, read the same way.

Sources: SGLang python/sglang/srt/observability/metrics_collector.py (priority-scheduling
labels; `sglang:page_size` / `sglang:num_pages` replacing `sglang:cache_config_info`); the
Triton TensorRT-LLM backend's custom_metrics_reporter.cc before and after the `waiting` and
`fraction` series (newer builds define them as active - scheduled and used / max).
"""

from __future__ import annotations

import pytest

from extproc.scraper.engines import SGLANG, TRTLLM
from extproc.scraper.parser import parse_metrics

SGLANG_LABELS = 'engine_type="unified",model_name="qwen",moe_ep_rank="0",pp_rank="0"'


def _sglang(family: str, value: float, extra: str = "") -> str:
    return f'{family}{{{SGLANG_LABELS}{extra},tp_rank="0"}} {value}\n'


def test_sglang_priority_breakdown_is_not_added_to_the_total() -> None:
    page = "".join([
        "# TYPE sglang:num_running_reqs gauge\n",
        _sglang("sglang:num_running_reqs", 10.0, ',priority=""'),
        _sglang("sglang:num_running_reqs", 6.0, ',priority="0"'),
        _sglang("sglang:num_running_reqs", 4.0, ',priority="1"'),
        _sglang("sglang:token_usage", 0.42, ',priority=""'),
        "# TYPE sglang:num_queue_reqs gauge\n",
        _sglang("sglang:num_queue_reqs", 7.0, ',priority=""'),
        _sglang("sglang:num_queue_reqs", 3.0, ',priority="0"'),
        _sglang("sglang:num_queue_reqs", 4.0, ',priority="1"'),
    ])  # fmt: skip
    m = parse_metrics(page, SGLANG, 1.0)
    assert (m.waiting, m.running, m.kv_usage) == (7, 10, 0.42)


def test_sglang_without_priority_labels_sums_its_data_parallel_ranks() -> None:
    page = "".join([
        _sglang("sglang:num_queue_reqs", 2.0, ',dp_rank="0"'),
        _sglang("sglang:num_queue_reqs", 3.0, ',dp_rank="1"'),
        _sglang("sglang:num_running_reqs", 8.0, ',dp_rank="0"'),
        _sglang("sglang:token_usage", 0.5, ',dp_rank="0"'),
    ])  # fmt: skip
    m = parse_metrics(page, SGLANG, 1.0)
    assert (m.waiting, m.running) == (5, 8)


def test_sglang_cache_geometry_from_its_gauges() -> None:
    page = "".join([
        _sglang("sglang:num_running_reqs", 12.0),
        _sglang("sglang:token_usage", 0.33),
        _sglang("sglang:num_queue_reqs", 4.0),
        "# TYPE sglang:page_size gauge\n",
        _sglang("sglang:page_size", 16.0),
        "# TYPE sglang:num_pages gauge\n",
        _sglang("sglang:num_pages", 65088.0),
    ])  # fmt: skip
    m = parse_metrics(page, SGLANG, 1.0)
    assert (m.block_size, m.num_gpu_blocks) == (16, 65088)


OLD_TRITON = """\
# TYPE nv_trt_llm_request_metrics gauge
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="context",version="1"} 1
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="scheduled",version="1"} 64
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="max",version="1"} 512
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="active",version="1"} 90
# TYPE nv_trt_llm_kv_cache_block_metrics gauge
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="tokens_per",model="tensorrt_llm",version="1"} 64
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="used",model="tensorrt_llm",version="1"} 4990
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="free",model="tensorrt_llm",version="1"} 1249
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="max",model="tensorrt_llm",version="1"} 6239
"""


def test_an_older_triton_backend_yields_waiting_and_kv_use_from_their_parts() -> None:
    m = parse_metrics(OLD_TRITON, TRTLLM, 1.0)
    assert (m.running, m.block_size, m.num_gpu_blocks) == (64, 64, 6239)
    assert m.waiting == 90 - 64
    assert m.kv_usage == pytest.approx(4990 / 6239)


def test_the_exported_series_win_over_derived_ones() -> None:
    waiting = (
        'nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="waiting",version="1"} 5'
    )
    fraction = (
        'nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction",model="tensorrt_llm",'
        'version="1"} 0.5'
    )
    lines = OLD_TRITON.splitlines()
    lines.insert(1, waiting)  # each inside its family's group, as the format requires
    lines.insert(lines.index("# TYPE nv_trt_llm_kv_cache_block_metrics gauge") + 1, fraction)
    m = parse_metrics("\n".join(lines) + "\n", TRTLLM, 1.0)
    assert (m.waiting, m.kv_usage) == (5, 0.5)


def test_no_capacity_gives_no_kv_use_rather_than_a_division_by_zero() -> None:
    page = OLD_TRITON.replace('kv_cache_block_type="max",model="tensorrt_llm",version="1"} 6239',
                              'kv_cache_block_type="max",model="tensorrt_llm",version="1"} 0')  # fmt: skip
    m = parse_metrics(page, TRTLLM, 1.0)
    assert m.kv_usage == 0.0
