"""What an exchange reports as it goes: request counts, sizes, latency, tokens, errors."""

from __future__ import annotations

from typing import Protocol

from extproc.errors import PickerError
from extproc.metrics import PickerMetrics
from extproc.models import ResolvedModel
from extproc.server.usage import Usage


class ExchangeObserver(Protocol):
    def routed(self, model: ResolvedModel | None, body_size: int) -> None: ...
    def response_bytes(self, size: int) -> None: ...
    def finished(
        self, model: ResolvedModel | None, seconds: float, usage: Usage | None
    ) -> None: ...
    def failed(self, model: ResolvedModel | None, error: PickerError) -> None: ...
    def aborted(self, model: ResolvedModel | None, state: str) -> None: ...
    def released(self, model: ResolvedModel | None) -> None: ...


class MetricsObserver:
    """Records an exchange into PickerMetrics; one per exchange (it sums response bytes)."""

    __slots__ = ("_metrics", "_response_size")

    def __init__(self, metrics: PickerMetrics) -> None:
        self._metrics = metrics
        self._response_size = 0

    def routed(self, model: ResolvedModel | None, body_size: int) -> None:
        series = self._metrics.model_series(*_labels(model))
        series.request_total.inc()
        series.request_sizes.observe(body_size)
        series.running.inc()

    def response_bytes(self, size: int) -> None:
        self._response_size += size

    def finished(self, model: ResolvedModel | None, seconds: float, usage: Usage | None) -> None:
        series = self._metrics.model_series(*_labels(model))
        series.request_duration.observe(seconds)
        series.response_sizes.observe(self._response_size)
        if usage is not None:
            series.input_tokens.observe(usage.prompt_tokens)
            series.output_tokens.observe(usage.completion_tokens)

    def failed(self, model: ResolvedModel | None, error: PickerError) -> None:
        self._metrics.request_error_total.labels(*_labels(model), error.code).inc()

    def aborted(self, model: ResolvedModel | None, state: str) -> None:
        # The stream ended before the response did (client gone, upstream reset, shutdown).
        self._metrics.request_error_total.labels(*_labels(model), "StreamClosed").inc()

    def released(self, model: ResolvedModel | None) -> None:
        self._metrics.model_series(*_labels(model)).running.dec()


def _labels(model: ResolvedModel | None) -> tuple[str, str]:
    if model is None:
        return ("", "")
    return (model.model_name, model.target_model)
