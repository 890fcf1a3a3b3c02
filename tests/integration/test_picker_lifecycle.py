"""The picker process: gRPC health, the metrics it exports, and graceful shutdown under load."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from extproc.envoyconf.bootstrap import CircuitBreaker
from extproc.stack.stack import LocalStack, StackConfig
from tests.integration.httpclient import Response, chat, picker_metrics, request

pytestmark = pytest.mark.integration

REFERENCE_METRICS = [
    "inference_model_request_total",
    "inference_model_request_error_total",
    "inference_model_request_duration_seconds",
    "inference_model_request_sizes",
    "inference_model_response_sizes",
    "inference_model_input_tokens",
    "inference_model_output_tokens",
    "inference_model_running_requests",
    "inference_pool_average_kv_cache_utilization",
    "inference_pool_average_queue_size",
    "inference_pool_ready_pods",
    "inference_extension_scheduler_e2e_duration_seconds",
    "inference_extension_plugin_duration_seconds",
]


@pytest.fixture
def stack() -> Iterator[LocalStack]:
    config = StackConfig(
        pods=2, speed=10, breaker=CircuitBreaker(), picker_args=("--drain-seconds", "20")
    )
    with LocalStack(config) as s:
        yield s


def _health(port: int, service: str) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status  # type: ignore[no-any-return]


def test_health_and_reference_metrics(stack: LocalStack) -> None:
    for service in ("liveness", "readiness", "envoy.service.ext_proc.v3.ExternalProcessor"):
        assert (
            _health(stack.picker_ports["health"], service) == health_pb2.HealthCheckResponse.SERVING
        )
    assert request(stack.url, body=chat()).status == 200
    assert request(stack.url, body=chat("unknown")).status == 404
    time.sleep(1.2)  # pool gauges are refreshed every second
    text = picker_metrics(stack)
    for name in REFERENCE_METRICS:
        assert f"\n{name}" in text or text.startswith(name), name
    assert 'inference_pool_ready_pods{name="vllm-llama2-7b-pool"} 2.0' in text
    # Both simulated pods are scraped and fresh.
    fresh = [
        line for line in text.splitlines() if line.startswith("extproc_endpoint_metrics_fresh{")
    ]
    assert len(fresh) == 2 and all(line.endswith(" 1.0") for line in fresh), fresh
    assert (
        'inference_model_request_total{model_name="/model/llama2",target_model_name="/model/llama2"} 1.0'
        in text
    )


def test_sigterm_drains_in_flight_requests(stack: LocalStack) -> None:
    assert stack.picker is not None
    results: list[Response] = []
    # ~2 s of streaming at speed 10: still in flight when the picker is told to stop.
    worker = threading.Thread(
        target=lambda: results.append(request(stack.url, body=chat(max_tokens=1000, stream=True)))
    )
    worker.start()
    time.sleep(0.5)
    stack.picker.signal(signal.SIGTERM)
    worker.join(30)
    (resp,) = results
    assert resp.status == 200
    assert resp.body.rstrip().endswith(b"data: [DONE]")
    stack.picker.proc.wait(25)
    assert stack.picker.proc.returncode == 0
    # Once it is gone, Envoy cannot reach it: the ext_proc filter fails closed.
    assert request(stack.url, body=chat()).status == 500


def test_static_config_edits_apply_without_a_restart() -> None:
    from extproc.config.static import render_static_config
    from extproc.stack.stack import scenario_documents

    config = StackConfig(
        pods=2, speed=20, breaker=CircuitBreaker(),
        picker_args=("--profile", "least-inflight", "--config-poll-interval", "0.1"),
    )  # fmt: skip
    with LocalStack(config) as stack:
        first, second = stack.endpoints
        pool, model = scenario_documents()

        def serve_only(endpoint: object, text: str | None = None) -> None:
            stack.static_config_path.write_text(
                text or render_static_config(pool, [model], [endpoint])  # type: ignore[list-item]
            )

        def pods_seen(n: int = 6) -> set[str]:
            return {request(stack.url, body=chat()).headers["x-inference-pod"] for _ in range(n)}

        serve_only(second)
        deadline = time.monotonic() + 10
        while pods_seen() != {second.name}:
            assert time.monotonic() < deadline, "edit not applied"
            time.sleep(0.1)
        # An invalid edit is rejected; the last good configuration keeps routing.
        serve_only(second, "kind: [broken")
        time.sleep(0.5)
        assert pods_seen() == {second.name}
        assert stack.picker is not None and stack.picker.alive()
        assert stack.picker.lines_matching("config_rejected")
        serve_only(first)
        deadline = time.monotonic() + 10
        while pods_seen() != {first.name}:
            assert time.monotonic() < deadline, "edit not applied"
            time.sleep(0.1)
