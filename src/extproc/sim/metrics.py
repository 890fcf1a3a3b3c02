"""Per-pod engine statistics and their Prometheus text exposition under vLLM's metric names.

Hand-written rather than prometheus_client: the picker scrapes every pod every 50 ms, and a
pod renders its whole page from plain attributes in a few tens of microseconds. Latency
histograms hold simulated seconds (wall time x speed), i.e. what a real vLLM would report.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

# vLLM's bucket boundaries (vllm/v1/metrics/loggers.py).
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
    120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip

FINISH_REASONS = ("stop", "length", "abort")
# Old label sets of vllm:lora_requests_info stay exported (as in vLLM); keep the newest few.
MAX_LORA_INFO_SERIES = 16


class Histogram:
    """Cumulative-on-render histogram: observe is one bisect and three additions."""

    __slots__ = ("buckets", "count", "counts", "sum")

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1


class EngineStats:
    """Counters and histograms the engine updates in place."""

    __slots__ = (
        "e2e",
        "generation_tokens",
        "itl",
        "preemptions",
        "prefix_hits",
        "prefix_queries",
        "prompt_tokens",
        "queue_time",
        "success",
        "ttft",
    )

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.prefix_queries = 0
        self.prefix_hits = 0
        self.preemptions = 0
        self.success = dict.fromkeys(FINISH_REASONS, 0)
        self.ttft = Histogram(TTFT_BUCKETS)
        self.itl = Histogram(ITL_BUCKETS)
        self.e2e = Histogram(REQUEST_LATENCY_BUCKETS)
        self.queue_time = Histogram(REQUEST_LATENCY_BUCKETS)


@dataclass(frozen=True, slots=True, kw_only=True)
class GaugeSnapshot:
    """Instantaneous engine state exported as gauges."""

    running: int
    waiting: int
    kv_usage: float
    running_loras: tuple[str, ...]
    waiting_loras: tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    return repr(float(value))


class MetricsExporter:
    """Renders one pod's /metrics page; remembers the lora_requests_info series it has shown."""

    def __init__(
        self, *, model_name: str, block_size: int, num_gpu_blocks: int, max_loras: int,
        legacy_kv_name: bool = False,
    ) -> None:  # fmt: skip
        self._model_label = f'model_name="{_escape(model_name)}"'
        self._kv_name = (
            "vllm:gpu_cache_usage_perc" if legacy_kv_name else "vllm:kv_cache_usage_perc"
        )
        self._max_loras = str(max_loras)
        self._cache_info = (
            "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n"
            "# TYPE vllm:cache_config_info gauge\n"
            f'vllm:cache_config_info{{block_size="{block_size}",'
            f'num_gpu_blocks="{num_gpu_blocks}",{self._model_label}}} 1.0\n'
        )
        self._lora_series: dict[tuple[str, str], float] = {}
        self._lora_current: tuple[str, str] | None = None

    def _lora_info(self, gauges: GaugeSnapshot) -> list[str]:
        key = (",".join(gauges.running_loras), ",".join(gauges.waiting_loras))
        if key != self._lora_current:
            # vLLM sets the gauge of the current label set to the wall-clock time; readers take
            # the series with the largest value.
            self._lora_current = key
            self._lora_series.pop(key, None)
            self._lora_series[key] = time.time()
            while len(self._lora_series) > MAX_LORA_INFO_SERIES:
                del self._lora_series[next(iter(self._lora_series))]
        lines = [
            "# HELP vllm:lora_requests_info Running stats on lora requests.",
            "# TYPE vllm:lora_requests_info gauge",
        ]
        for (running, waiting), stamp in self._lora_series.items():
            lines.append(
                f'vllm:lora_requests_info{{max_lora="{self._max_loras}",'
                f'running_lora_adapters="{_escape(running)}",'
                f'waiting_lora_adapters="{_escape(waiting)}"}} {_num(stamp)}'
            )
        return lines

    def _histogram(self, name: str, help_text: str, hist: Histogram) -> list[str]:
        label = self._model_label
        lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        cumulative = 0
        for bound, n in zip(hist.buckets, hist.counts, strict=False):
            cumulative += n
            lines.append(f'{name}_bucket{{le="{bound!r}",{label}}} {_num(cumulative)}')
        lines.append(f'{name}_bucket{{le="+Inf",{label}}} {_num(hist.count)}')
        lines.append(f"{name}_count{{{label}}} {_num(hist.count)}")
        lines.append(f"{name}_sum{{{label}}} {_num(hist.sum)}")
        return lines

    def render(self, gauges: GaugeSnapshot, stats: EngineStats) -> bytes:
        """The whole exposition page (Prometheus text format 0.0.4)."""
        label = self._model_label
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, value: float) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.append(f"{name}{{{label}}} {_num(value)}")

        metric(
            "vllm:num_requests_running", "gauge",
            "Number of requests in model execution batches.", gauges.running,
        )  # fmt: skip
        metric(
            "vllm:num_requests_waiting", "gauge",
            "Number of requests waiting to be processed.", gauges.waiting,
        )  # fmt: skip
        metric(
            self._kv_name, "gauge", "KV-cache usage. 1 means 100 percent usage.", gauges.kv_usage
        )
        lines.extend(self._lora_info(gauges))
        metric(
            "vllm:prefix_cache_queries_total", "counter",
            "Prefix cache queries, in terms of number of queried tokens.", stats.prefix_queries,
        )  # fmt: skip
        metric(
            "vllm:prefix_cache_hits_total", "counter",
            "Prefix cache hits, in terms of number of cached tokens.", stats.prefix_hits,
        )  # fmt: skip
        metric(
            "vllm:num_preemptions_total", "counter",
            "Cumulative number of preemption from the engine.", stats.preemptions,
        )  # fmt: skip
        metric(
            "vllm:prompt_tokens_total", "counter",
            "Number of prefill tokens processed.", stats.prompt_tokens,
        )  # fmt: skip
        metric(
            "vllm:generation_tokens_total", "counter",
            "Number of generation tokens processed.", stats.generation_tokens,
        )  # fmt: skip
        lines.append("# HELP vllm:request_success_total Count of successfully processed requests.")
        lines.append("# TYPE vllm:request_success_total counter")
        for reason, count in stats.success.items():
            lines.append(
                f'vllm:request_success_total{{finished_reason="{reason}",{label}}} {_num(count)}'
            )
        lines.extend(
            self._histogram(
                "vllm:time_to_first_token_seconds",
                "Histogram of time to first token in seconds.",
                stats.ttft,
            )
        )
        lines.extend(
            self._histogram(
                "vllm:inter_token_latency_seconds",
                "Histogram of inter-token latency in seconds.",
                stats.itl,
            )
        )
        lines.extend(
            self._histogram(
                "vllm:e2e_request_latency_seconds",
                "Histogram of e2e request latency in seconds.",
                stats.e2e,
            )
        )
        lines.extend(
            self._histogram(
                "vllm:request_queue_time_seconds",
                "Histogram of time spent in WAITING phase for request.",
                stats.queue_time,
            )
        )
        lines.append("")
        return (self._cache_info + "\n".join(lines)).encode()
