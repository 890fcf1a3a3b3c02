"""The targeted exposition parser against captured vLLM / SGLang / TensorRT-LLM pages and
garbage."""

from __future__ import annotations

from pathlib import Path

import pytest

from extproc.scraper.engines import SGLANG, TRTLLM, VLLM, MetricNames
from extproc.scraper.parser import ParseError, parse_labels, parse_metrics
from extproc.scraper.snapshot import EndpointMetrics

TESTDATA = Path(__file__).parent / "testdata"


def _read(name: str) -> str:
    return (TESTDATA / name).read_bytes().decode("utf-8", "replace")


@pytest.mark.parametrize(
    ("page", "names", "want"),
    [
        pytest.param(
            "vllm_v1.txt", VLLM,
            EndpointMetrics(
                waiting=3, running=7, kv_usage=0.4375,
                running_loras=frozenset({"sql-lora", "tweet-lora"}),
                waiting_loras=frozenset({"chat-lora"}), max_lora=4,
                block_size=16, num_gpu_blocks=27126,
                prefix_cache_queries=52000.0, prefix_cache_hits=31000.0, updated_at=1.0,
            ),
            id="vllm-new-names-lora-series-cache-config",
        ),
        pytest.param(
            "vllm_legacy.txt", VLLM,
            EndpointMetrics(
                waiting=11, running=2, kv_usage=0.91,
                prefix_cache_queries=400.0, prefix_cache_hits=100.0, updated_at=1.0,
            ),
            id="vllm-legacy-names",
        ),
        pytest.param(
            "vllm_data_parallel.txt", VLLM,
            EndpointMetrics(waiting=3, running=10, kv_usage=0.4, updated_at=1.0),
            id="engines-summed-kv-averaged-new-name-preferred",
        ),
        pytest.param(
            "vllm_missing.txt", VLLM, EndpointMetrics(waiting=5, updated_at=1.0),
            id="missing-families-read-as-zero",
        ),
        pytest.param(
            "garbage.txt", VLLM,
            EndpointMetrics(
                waiting=2, running=3, kv_usage=0.25,
                running_loras=frozenset({'a"b', "c"}), waiting_loras=frozenset({"x\\y"}),
                max_lora=2, block_size=16, num_gpu_blocks=0, updated_at=1.0,
            ),
            id="garbage-lines-skipped-escapes-decoded",
        ),
        pytest.param(
            "sglang.txt", SGLANG, EndpointMetrics(waiting=4, running=12, kv_usage=0.33,
                                                   block_size=1, num_gpu_blocks=20000,
                                                   updated_at=1.0),
            id="sglang-mapping-page-size-and-pages",
        ),
        pytest.param(
            "triton_trtllm.txt", TRTLLM,
            EndpointMetrics(waiting=3, running=6, kv_usage=0.25, block_size=64,
                            num_gpu_blocks=11147, updated_at=1.0),
            id="triton-tensorrt-llm-label-selectors",
        ),
        pytest.param(
            "trtllm_serve.txt", TRTLLM,
            EndpointMetrics(waiting=2, running=9, kv_usage=0.5, block_size=32,
                            num_gpu_blocks=4096, updated_at=1.0),
            id="trtllm-serve-names",
        ),
    ],
)  # fmt: skip
def test_parse_pages(page: str, names: object, want: EndpointMetrics) -> None:
    assert parse_metrics(_read(page), names, 1.0) == want  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("<html>502 Bad Gateway</html>", id="html"),
        pytest.param("# TYPE vllm:num_requests_waiting gauge\n", id="comments-only"),
        pytest.param("vllm:num_requests_waiting_created 1.7e9\n", id="created-only"),
    ],
)
def test_pages_without_load_metrics_are_errors(text: str) -> None:
    with pytest.raises(ParseError):
        parse_metrics(text, VLLM, 0.0)


def test_first_line_of_the_page_is_read() -> None:
    snap = parse_metrics("vllm:num_requests_waiting 9\nvllm:num_requests_running 1", VLLM, 0.0)
    assert (snap.waiting, snap.running) == (9, 1)


def test_crlf_line_endings() -> None:
    snap = parse_metrics("vllm:num_requests_waiting 9\r\nvllm:num_requests_running 1\r\n", VLLM, 0)
    assert (snap.waiting, snap.running) == (9, 1)


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        pytest.param('{a="1",b="2"}', {"a": "1", "b": "2"}, id="plain"),
        pytest.param('{a="x\\"y",b="\\\\"}', {"a": 'x"y', "b": "\\"}, id="escapes"),
        pytest.param('{a="line\\nbreak"}', {"a": "line\nbreak"}, id="newline-escape"),
        pytest.param('{a="}"}', {"a": "}"}, id="brace-in-value"),
        pytest.param('{a="1",}', {"a": "1"}, id="trailing-comma"),
        pytest.param('{a="1"', None, id="unterminated"),
        pytest.param("{a=1}", None, id="unquoted"),
        pytest.param("", {}, id="no-labels"),
    ],
)
def test_parse_labels(raw: str, want: dict[str, str] | None) -> None:
    assert parse_labels(raw) == want


def test_parser_agrees_with_prometheus_client_on_the_captured_page() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    text = _read("vllm_v1.txt")
    values = {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name in {"vllm:num_requests_waiting", "vllm:num_requests_running"}
    }
    snap = parse_metrics(text, VLLM, 0.0)
    assert values == {"vllm:num_requests_waiting": snap.waiting,
                      "vllm:num_requests_running": snap.running}  # fmt: skip


@pytest.mark.parametrize(
    ("line", "read"),
    [
        pytest.param('f{request_type="waiting"} 4', 4, id="only-label"),
        pytest.param('f{a="1",request_type="waiting"} 4', 4, id="later-label"),
        pytest.param('f{request_type="waiting_x"} 4', 0, id="longer-value-is-another-value"),
        pytest.param('f{a="request_type=\\"waiting\\""} 4', 0, id="inside-another-value"),
        pytest.param('f{xrequest_type="waiting"} 4', 0, id="longer-label-is-another-label"),
        pytest.param("f 4", 0, id="no-labels"),
    ],
)
def test_label_selector_reads_only_its_series(line: str, read: int) -> None:
    names = MetricNames(waiting=("f{request_type=waiting}",), running=("g",), kv_usage=())
    page = f"{line}\ng 1\n"
    assert parse_metrics(page, names, 1.0).waiting == read


def test_bytes_and_text_pages_read_the_same_and_bad_utf8_stays_in_labels() -> None:
    raw = (TESTDATA / "vllm_v1.txt").read_bytes()
    assert parse_metrics(raw, VLLM, 1.0) == parse_metrics(raw.decode(), VLLM, 1.0)
    page = (
        b"vllm:num_requests_waiting 1\n"
        b'vllm:lora_requests_info{running_lora_adapters="a\xff",waiting_lora_adapters=""} 2\n'
    )
    assert parse_metrics(page, VLLM, 0.0).running_loras == frozenset({"a\ufffd"})


def test_a_family_after_a_longer_name_that_starts_with_it_is_found() -> None:
    page = (
        b'vllm:num_requests_waiting_by_reason{reason="capacity"} 7\n'
        b"vllm:num_requests_running 2\n"
        b"vllm:num_requests_waiting 3\n"
    )
    snap = parse_metrics(page, VLLM, 0.0)
    assert (snap.waiting, snap.running) == (3, 2)
