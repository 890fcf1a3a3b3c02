"""The per-stream state machine, driven message by message with a fake picker."""

from __future__ import annotations

import gzip
import json
import random
import time

import pytest

from extproc._proto.envoy.config.core.v3 import base_pb2
from extproc._proto.envoy.extensions.filters.http.ext_proc.v3.processing_mode_pb2 import (
    ProcessingMode,
)
from extproc._proto.envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from extproc.api.v1alpha2 import InferenceModel, TargetModel
from extproc.endpoints import Endpoint
from extproc.errors import NoEndpoint, PickerError
from extproc.metrics import PickerMetrics
from extproc.models import ModelTable, ResolvedModel
from extproc.scheduling.inflight import InFlight
from extproc.scheduling.types import LLMRequest, PickResult
from extproc.server import replies
from extproc.server.exchange import Exchange, ExchangeSettings, State
from extproc.server.observer import MetricsObserver
from extproc.server.usage import UsageParser

EP1 = Endpoint("pod-1", "10.0.0.1", 8000)
EP2 = Endpoint("pod-2", "10.0.0.2", 8000)


class FakePicker:
    def __init__(self, result: tuple[Endpoint, ...] | PickerError = (EP1,)) -> None:
        self.result = result
        self.requests: list[LLMRequest] = []

    def pick(self, request: LLMRequest) -> PickResult:
        self.requests.append(request)
        if isinstance(self.result, PickerError):
            raise self.result
        return PickResult(self.result, prefill_tokens=100)


class Resolver:
    def __init__(self) -> None:
        models = [
            InferenceModel(name="m", model_name="chat", pool_name="p",
                           target_models=(TargetModel(name="chat-v2"),)),
            InferenceModel(name="s", model_name="same", pool_name="p", criticality="Critical"),
        ]  # fmt: skip
        self.table = ModelTable(models, random.Random(0))

    def resolve_model(self, model_name: str) -> ResolvedModel | None:
        return self.table.resolve(model_name)


def make_exchange(
    picker: FakePicker | None = None, **settings: object
) -> tuple[Exchange, FakePicker, InFlight, PickerMetrics]:
    picker = picker or FakePicker()
    inflight, metrics = InFlight(), PickerMetrics()
    exchange = Exchange(
        Resolver(),
        picker,
        inflight,
        MetricsObserver(metrics),
        ExchangeSettings(**settings),  # type: ignore[arg-type]
    )
    return exchange, picker, inflight, metrics


def headers_msg(
    end_of_stream: bool = False, mode: int | None = None, extra: dict[str, str] | None = None,
    subset: list[str] | None = None,
) -> pb.ProcessingRequest:  # fmt: skip
    msg = pb.ProcessingRequest()
    method = "GET" if end_of_stream else "POST"
    hdrs = {":method": method, ":path": "/v1/chat/completions", **(extra or {})}
    for k, v in hdrs.items():
        msg.request_headers.headers.headers.append(
            base_pb2.HeaderValue(key=k, raw_value=v.encode())
        )
    msg.request_headers.end_of_stream = end_of_stream
    if mode is not None:
        msg.protocol_config.request_body_mode = mode  # type: ignore[assignment]
        msg.protocol_config.response_body_mode = ProcessingMode.STREAMED
    if subset is not None:
        hint = msg.metadata_context.filter_metadata[replies.SUBSET_HINT_NAMESPACE]
        hint.fields[replies.SUBSET_HINT_KEY].list_value.extend(subset)
    return msg


def body_msg(body: bytes, end_of_stream: bool = True) -> pb.ProcessingRequest:
    return pb.ProcessingRequest(request_body=pb.HttpBody(body=body, end_of_stream=end_of_stream))


def set_headers(common: pb.CommonResponse) -> dict[str, bytes]:
    return {h.header.key: h.header.raw_value for h in common.header_mutation.set_headers}


def metadata_destination(reply: pb.ProcessingResponse) -> str:
    ns = reply.dynamic_metadata.fields[replies.DESTINATION_METADATA_NAMESPACE]
    return ns.struct_value.fields[replies.DESTINATION_HEADER].string_value


def test_buffered_request_is_routed_and_model_rewritten() -> None:
    exchange, picker, inflight, _ = make_exchange()
    assert exchange.handle(headers_msg(mode=ProcessingMode.BUFFERED)) == [replies.CONTINUE_HEADERS]
    body = b'{"model": "chat", "messages": []}'
    (reply,) = exchange.handle(body_msg(body))
    common = reply.request_body.response
    new_body = common.body_mutation.body
    assert json.loads(new_body)["model"] == "chat-v2"
    assert set_headers(common) == {
        "x-gateway-destination-endpoint": b"10.0.0.1:8000",
        "content-length": str(len(new_body)).encode(),
    }
    assert metadata_destination(reply) == "10.0.0.1:8000"
    assert picker.requests[0].target_model == "chat-v2"
    assert inflight.get("10.0.0.1:8000") == 1
    exchange.close()
    assert inflight.get("10.0.0.1:8000") == 0


def test_unchanged_body_is_not_sent_back() -> None:
    exchange, picker, _, _ = make_exchange()
    exchange.handle(headers_msg())
    (reply,) = exchange.handle(body_msg(b'{"model": "same"}'))
    common = reply.request_body.response
    assert not common.HasField("body_mutation")
    assert "content-length" not in set_headers(common)
    assert picker.requests[0].criticality == "Critical"


def test_full_duplex_waits_for_the_whole_body_then_streams_it_back() -> None:
    exchange, _, _, _ = make_exchange()
    assert exchange.handle(headers_msg(mode=ProcessingMode.FULL_DUPLEX_STREAMED)) == []
    payload = b'{"model": "chat", "prompt": "' + b"x" * 150_000 + b'"}'
    assert exchange.handle(body_msg(payload[:70_000], end_of_stream=False)) == []
    out = exchange.handle(body_msg(payload[70_000:], end_of_stream=True))
    head, *chunks = out
    assert head.WhichOneof("response") == "request_headers"
    expected = payload.replace(b'"chat"', b'"chat-v2"')
    assert (
        set_headers(head.request_headers.response)["content-length"] == str(len(expected)).encode()
    )
    streamed = [c.request_body.response.body_mutation.streamed_response for c in chunks]
    assert b"".join(s.body for s in streamed) == expected
    assert all(len(s.body) <= 62_000 for s in streamed)
    assert [s.end_of_stream for s in streamed][-1] is True


def test_full_duplex_with_trailers() -> None:
    exchange, _, _, _ = make_exchange()
    exchange.handle(headers_msg(mode=ProcessingMode.FULL_DUPLEX_STREAMED))
    assert exchange.handle(body_msg(b'{"model": "same"}', end_of_stream=False)) == []
    out = exchange.handle(pb.ProcessingRequest(request_trailers=pb.HttpTrailers()))
    assert [r.WhichOneof("response") for r in out] == [
        "request_headers", "request_body", "request_trailers",
    ]  # fmt: skip
    assert out[1].request_body.response.body_mutation.streamed_response.end_of_stream is False


def test_header_only_request_is_decided_in_the_headers_reply() -> None:
    exchange, picker, _, _ = make_exchange()
    (reply,) = exchange.handle(headers_msg(end_of_stream=True))
    assert set_headers(reply.request_headers.response) == {
        "x-gateway-destination-endpoint": b"10.0.0.1:8000"
    }
    assert picker.requests[0].model == ""


def test_post_without_a_body_is_400() -> None:
    exchange, picker, _, _ = make_exchange()
    msg = headers_msg(end_of_stream=True)
    msg.request_headers.headers.headers[0].raw_value = b"POST"
    (reply,) = exchange.handle(msg)
    assert reply.immediate_response.status.code == 400
    assert picker.requests == []


def test_header_only_request_without_endpoints_is_503() -> None:
    exchange, _, _, _ = make_exchange(FakePicker(NoEndpoint("none")))
    (reply,) = exchange.handle(headers_msg(end_of_stream=True))
    assert reply.immediate_response.status.code == 503


def test_fallbacks_are_a_comma_list() -> None:
    exchange, _, inflight, _ = make_exchange(FakePicker((EP1, EP2)))
    exchange.handle(headers_msg())
    (reply,) = exchange.handle(body_msg(b'{"model": "same"}'))
    destination = set_headers(reply.request_body.response)["x-gateway-destination-endpoint"]
    assert destination == b"10.0.0.1:8000,10.0.0.2:8000"
    assert metadata_destination(reply) == "10.0.0.1:8000,10.0.0.2:8000"
    assert inflight.get(EP1.address) == 1 and inflight.get(EP2.address) == 0


def test_subset_hint_reaches_the_picker() -> None:
    exchange, picker, _, _ = make_exchange()
    exchange.handle(headers_msg(subset=["10.0.0.2:8000", "[::1]:80", "garbage"]))
    exchange.handle(body_msg(b'{"model": "same"}'))
    assert picker.requests[0].subset == frozenset({"10.0.0.2", "::1"})


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param(b"{nope", 400, "BadRequest", id="not-json"),
        pytest.param(b'{"model": 1}', 400, "BadRequest", id="model-not-string"),
        pytest.param(b"", 400, "BadRequest", id="empty"),
        pytest.param(b'{"model": "unknown"}', 404, "ModelNotFound", id="unknown-model"),
    ],
)
def test_errors_become_immediate_json_responses(body: bytes, status: int, code: str) -> None:
    exchange, _, inflight, metrics = make_exchange()
    exchange.handle(headers_msg())
    (reply,) = exchange.handle(body_msg(body))
    immediate = reply.immediate_response
    assert immediate.status.code == status
    assert json.loads(immediate.body)["error"]["type"] == code
    assert exchange.state is State.DONE
    assert inflight.total() == 0
    errors = metrics.registry.get_sample_value(
        "inference_model_request_error_total",
        {"model_name": "unknown" if code == "ModelNotFound" else "",
         "target_model_name": "unknown" if code == "ModelNotFound" else "", "error_code": code},
    )  # fmt: skip
    assert errors == 1


def test_passthrough_routes_unknown_models_unchanged() -> None:
    exchange, picker, _, _ = make_exchange(model_passthrough=True)
    exchange.handle(headers_msg())
    (reply,) = exchange.handle(body_msg(b'{"model": "unknown"}'))
    assert reply.WhichOneof("response") == "request_body"
    assert picker.requests[0].target_model == "unknown"


def test_full_duplex_body_over_the_limit_is_413() -> None:
    exchange, _, _, _ = make_exchange(max_body_bytes=100)
    exchange.handle(headers_msg(mode=ProcessingMode.FULL_DUPLEX_STREAMED))
    (reply,) = exchange.handle(body_msg(b"x" * 101, end_of_stream=False))
    assert reply.immediate_response.status.code == 413


def test_response_path_passes_bytes_and_records_usage() -> None:
    exchange, _, inflight, metrics = make_exchange()
    exchange.handle(headers_msg())
    exchange.handle(body_msg(b'{"model": "chat"}'))
    resp_headers = pb.ProcessingRequest()
    resp_headers.response_headers.headers.headers.append(
        base_pb2.HeaderValue(key="content-type", raw_value=b"text/event-stream")
    )
    assert exchange.handle(resp_headers) == [replies.CONTINUE_RESPONSE_HEADERS]
    sse = b'data: {"usage": {"prompt_tokens": 5, "completion_tokens": 7}}\n\ndata: [DONE]\n\n'
    for i, part in enumerate((sse[:20], sse[20:])):
        msg = pb.ProcessingRequest(response_body=pb.HttpBody(body=part, end_of_stream=i == 1))
        assert exchange.handle(msg) == [replies.CONTINUE_RESPONSE_BODY]
    assert exchange.state is State.DONE
    assert inflight.total() == 0
    labels = {"model_name": "chat", "target_model_name": "chat-v2"}
    assert metrics.registry.get_sample_value("inference_model_output_tokens_sum", labels) == 7
    assert metrics.registry.get_sample_value("inference_model_input_tokens_sum", labels) == 5
    assert metrics.registry.get_sample_value("inference_model_request_total", labels) == 1
    running = metrics.registry.get_sample_value(
        "inference_model_running_requests", {"model_name": "chat"}
    )
    assert running == 0


LABELS = {"model_name": "chat", "target_model_name": "chat-v2"}


def test_response_body_not_sent_to_us_ends_with_the_stream() -> None:
    # Envoy Gateway's `processingMode.response: {}`: response headers, then the stream ends.
    exchange, _, inflight, metrics = make_exchange()
    first = headers_msg()
    first.protocol_config.request_body_mode = ProcessingMode.BUFFERED
    first.protocol_config.response_body_mode = ProcessingMode.NONE
    exchange.handle(first)
    exchange.handle(body_msg(b'{"model": "chat"}'))
    exchange.handle(pb.ProcessingRequest(response_headers=pb.HttpHeaders()))
    assert inflight.total() == 1  # in flight until the stream ends
    exchange.close()
    assert inflight.total() == 0
    get = metrics.registry.get_sample_value
    assert not get("inference_model_request_error_total", {**LABELS, "error_code": "StreamClosed"})
    assert get("inference_model_request_duration_seconds_count", LABELS) == 1


def test_response_body_without_response_headers_is_measured() -> None:
    # `response_header_mode: SKIP`: the body arrives first.
    exchange, _, inflight, metrics = make_exchange()
    exchange.handle(headers_msg())
    exchange.handle(body_msg(b'{"model": "chat"}'))
    sse = b'data: {"usage": {"prompt_tokens": 5, "completion_tokens": 7}}\n\ndata: [DONE]\n\n'
    for i, part in enumerate((sse[:20], sse[20:])):
        exchange.handle(
            pb.ProcessingRequest(response_body=pb.HttpBody(body=part, end_of_stream=i == 1))
        )
    assert inflight.total() == 0
    get = metrics.registry.get_sample_value
    assert get("inference_model_response_sizes_sum", LABELS) == len(sse)
    assert get("inference_model_output_tokens_sum", LABELS) == 7


def test_gzip_response_usage_is_recorded() -> None:
    exchange, _, _, metrics = make_exchange()
    exchange.handle(headers_msg())
    exchange.handle(body_msg(b'{"model": "chat"}'))
    headers = pb.ProcessingRequest()
    for key, value in ((b"content-type", b"application/json"), (b"content-encoding", b"gzip")):
        headers.response_headers.headers.headers.append(
            base_pb2.HeaderValue(key=key.decode(), raw_value=value)
        )
    exchange.handle(headers)
    body = gzip.compress(b'{"usage": {"prompt_tokens": 5, "completion_tokens": 7}}')
    exchange.handle(pb.ProcessingRequest(response_body=pb.HttpBody(body=body, end_of_stream=True)))
    assert metrics.registry.get_sample_value("inference_model_output_tokens_sum", LABELS) == 7


def test_the_endpoint_envoy_reports_as_served_takes_over_the_accounting() -> None:
    # DESIGN: `x-gateway-destination-endpoint-served` in `envoy.lb` on the response path (a
    # fallback served when the primary failed).
    fallback = Endpoint("p2", "10.0.0.2", 8000)
    exchange, _, inflight, _ = make_exchange(FakePicker((EP1, fallback)))
    exchange.handle(headers_msg())
    exchange.handle(body_msg(b'{"model": "chat"}'))
    assert (inflight.get(EP1.address), inflight.pending_prefill(EP1.address)) == (1, 100)
    headers = pb.ProcessingRequest(response_headers=pb.HttpHeaders())
    lb = headers.metadata_context.filter_metadata[replies.DESTINATION_METADATA_NAMESPACE]
    lb.fields[replies.SERVED_METADATA_KEY].string_value = fallback.address
    exchange.handle(headers)
    assert (inflight.get(EP1.address), inflight.pending_prefill(EP1.address)) == (0, 0)
    assert (inflight.get(fallback.address), inflight.pending_prefill(fallback.address)) == (1, 100)
    exchange.handle(pb.ProcessingRequest(response_body=pb.HttpBody(body=b"{}", end_of_stream=True)))
    assert inflight.total() == 0


@pytest.mark.parametrize(
    "served", ["", "not-an-ip:80", "10.0.0.9"], ids=["empty", "bad", "no-port"]
)
def test_an_unusable_served_endpoint_is_ignored(served: str) -> None:
    exchange, _, inflight, _ = make_exchange()
    exchange.handle(headers_msg())
    exchange.handle(body_msg(b'{"model": "chat"}'))
    headers = pb.ProcessingRequest(response_headers=pb.HttpHeaders())
    lb = headers.metadata_context.filter_metadata[replies.DESTINATION_METADATA_NAMESPACE]
    lb.fields[replies.SERVED_METADATA_KEY].string_value = served
    exchange.handle(headers)
    assert inflight.get(EP1.address) == 1


def _error_counts(metrics: PickerMetrics) -> dict[tuple[str, str], float]:
    return {
        (s.labels["model_name"], s.labels["error_code"]): s.value
        for family in metrics.registry.collect()
        if family.name == "inference_model_request_error"
        for s in family.samples
        if s.name == "inference_model_request_error_total"
    }


def test_unknown_model_names_share_one_error_series() -> None:
    # Clients choose model names: one series per name would let them grow the registry.
    metrics = PickerMetrics()
    for i in range(20):
        observer = MetricsObserver(metrics)
        exchange = Exchange(Resolver(), FakePicker(), InFlight(), observer, ExchangeSettings())
        exchange.handle(headers_msg())
        (reply,) = exchange.handle(body_msg(b'{"model": "made-up-%d"}' % i))
        assert reply.immediate_response.status.code == 404
        exchange.close()
    assert _error_counts(metrics) == {("unknown", "ModelNotFound"): 20}


def test_an_error_after_routing_is_counted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_feed(self: object, chunk: bytes) -> None:
        raise RuntimeError("a bug in the usage parser")

    monkeypatch.setattr(UsageParser, "feed", broken_feed)
    exchange, _, inflight, metrics = make_exchange()
    exchange.handle(headers_msg())
    exchange.handle(body_msg(b'{"model": "chat"}'))
    exchange.handle(pb.ProcessingRequest(response_headers=pb.HttpHeaders()))
    body = pb.ProcessingRequest(response_body=pb.HttpBody(body=b"{}", end_of_stream=True))
    (reply,) = exchange.handle(body)
    assert reply.immediate_response.status.code == 500
    exchange.close()  # the stream then ends, as it always does
    assert inflight.total() == 0
    assert _error_counts(metrics) == {("chat", "Internal"): 1}


def test_stream_closed_mid_request_leaks_nothing() -> None:
    exchange, _, inflight, metrics = make_exchange()
    exchange.handle(headers_msg())
    exchange.handle(body_msg(b'{"model": "chat"}'))
    assert inflight.total() == 1
    exchange.close()
    exchange.close()
    assert inflight.total() == 0
    assert (
        metrics.registry.get_sample_value(
            "inference_model_request_error_total",
            {"model_name": "chat", "target_model_name": "chat-v2", "error_code": "StreamClosed"},
        )
        == 1
    )


def test_unexpected_exception_is_a_500_not_a_crash() -> None:
    class Broken(FakePicker):
        def pick(self, request: LLMRequest) -> PickResult:
            raise RuntimeError("bug")

    exchange, _, _, _ = make_exchange(Broken())
    exchange.handle(headers_msg())
    (reply,) = exchange.handle(body_msg(b'{"model": "chat"}'))
    assert reply.immediate_response.status.code == 500
    assert b"Traceback" not in reply.immediate_response.body


def test_prefill_estimate_is_held_until_the_first_response_byte() -> None:
    exchange, _, inflight, _ = make_exchange()
    exchange.handle(headers_msg())
    exchange.handle(body_msg(b'{"model": "chat"}'))
    assert inflight.pending_prefill(EP1.address) == 100
    exchange.handle(pb.ProcessingRequest(response_headers=pb.HttpHeaders()))
    assert inflight.pending_prefill(EP1.address) == 100  # headers come before any token
    exchange.handle(pb.ProcessingRequest(response_body=pb.HttpBody(body=b"data: {}\n\n")))
    assert inflight.pending_prefill(EP1.address) == 0
    assert inflight.get(EP1.address) == 1
    exchange.close()
    assert inflight.total() == 0


def test_response_chunks_time_the_endpoints_engine_steps() -> None:
    exchange, _, inflight, _ = make_exchange()
    exchange.handle(headers_msg())
    exchange.handle(body_msg(b'{"model": "chat"}'))
    exchange.handle(pb.ProcessingRequest(response_headers=pb.HttpHeaders()))
    for _ in range(3):
        exchange.handle(pb.ProcessingRequest(response_body=pb.HttpBody(body=b"data: {}\n\n")))
        time.sleep(0.01)  # the engine's next step: at least 10 ms later
    assert inflight.step_durations()[EP1.address] >= 0.01
    exchange.close()
    assert inflight.step_durations() == {}  # nothing in flight there any more


def test_prefill_estimate_is_released_when_the_stream_dies_first() -> None:
    exchange, _, inflight, _ = make_exchange()
    exchange.handle(headers_msg())
    exchange.handle(body_msg(b'{"model": "chat"}'))
    exchange.close()
    assert inflight.pending_prefill(EP1.address) == 0
