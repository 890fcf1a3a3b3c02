"""One ext_proc stream = one HTTP exchange: an explicit state machine from headers to response.

`Exchange.handle` is synchronous and does no I/O: it takes one ProcessingRequest and returns the
replies to send. The gRPC layer (`service.py`) only moves messages.
"""

from __future__ import annotations

import enum
import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from extproc._proto.envoy.extensions.filters.http.ext_proc.v3.processing_mode_pb2 import (
    ProcessingMode,
)
from extproc._proto.envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from extproc.endpoints import Endpoint, parse_address
from extproc.errors import BadRequest, ModelNotFound, PayloadTooLarge, PickerError
from extproc.logs import get_logger
from extproc.models import ResolvedModel
from extproc.scheduling.inflight import InFlight
from extproc.scheduling.types import EndpointPicker, LLMRequest
from extproc.server import replies
from extproc.server.body import parse_body, rewrite_model
from extproc.server.observer import ExchangeObserver
from extproc.server.usage import UsageParser

log = get_logger(__name__)

BUFFERED = ProcessingMode.BUFFERED
FULL_DUPLEX = ProcessingMode.FULL_DUPLEX_STREAMED
NO_BODY = ProcessingMode.NONE
UNKNOWN_MODEL = ResolvedModel("unknown", "unknown", "Standard")
STREAMED = ProcessingMode.STREAMED
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
_ids = itertools.count(1)
# An inference request without a body cannot be routed by model.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class ModelResolver(Protocol):
    def resolve_model(self, model_name: str) -> ResolvedModel | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeSettings:
    # Unknown models: 404 (v1alpha2 behaviour), or route them unchanged as Standard.
    model_passthrough: bool = False
    # Body mode assumed when Envoy does not announce one in protocol_config.
    default_body_mode: int = BUFFERED
    # FULL_DUPLEX_STREAMED bodies are buffered here; larger ones get 413.
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # Needed when Envoy's route picks the cluster by the destination header (one cluster per
    # endpoint); not needed for an ORIGINAL_DST pool cluster.
    clear_route_cache: bool = False


class State(enum.Enum):
    REQUEST_HEADERS = "request_headers"
    REQUEST_BODY = "request_body"
    RESPONSE_HEADERS = "response_headers"
    RESPONSE_BODY = "response_body"
    DONE = "done"


Replies = list[pb.ProcessingResponse]


class Exchange:
    """Processing state of one request; create one per stream, call `close()` when it ends."""

    def __init__(
        self,
        resolver: ModelResolver,
        picker: EndpointPicker,
        inflight: InFlight,
        observer: ExchangeObserver,
        settings: ExchangeSettings,
    ) -> None:
        self._resolver = resolver
        self._picker = picker
        self._inflight = inflight
        self._observer = observer
        self._settings = settings
        self.state = State.REQUEST_HEADERS
        self._request_mode = settings.default_body_mode
        self._response_mode = STREAMED
        self._headers: dict[str, str] = {}
        self._subset: frozenset[str] | None = None
        self._chunks: list[bytes] = []
        self._body_size = 0
        self._usage: UsageParser | None = None
        self._routed_to: str | None = None
        # Prefill tokens counted against the endpoint until the first response byte.
        self._prefill_tokens = 0
        self._resolved: ResolvedModel | None = None
        self._started = time.perf_counter()

    # -- dispatch ---------------------------------------------------------------------------
    def handle(self, message: pb.ProcessingRequest) -> Replies:
        kind = message.WhichOneof("request")
        try:
            if kind == "request_headers":
                return self._on_request_headers(message)
            if kind == "request_body":
                return self._on_request_body(message.request_body)
            if kind == "request_trailers":
                return self._on_request_trailers()
            if kind == "response_headers":
                if message.HasField("metadata_context"):
                    self._served_by(_served_endpoint(message.metadata_context))
                return self._on_response_headers(message.response_headers)
            if kind == "response_body":
                return self._on_response_body(message.response_body)
            if kind == "response_trailers":
                self._finish_response()
                return [replies.CONTINUE_RESPONSE_TRAILERS]
        except PickerError as error:
            return self._fail(error)
        except Exception as exc:  # a bug must cost one request, not the server
            log.error("exchange_failed", state=self.state.value, error=repr(exc), exc_info=True)
            return self._fail(PickerError("internal error in the endpoint picker"))
        return []

    def close(self) -> None:
        """Release per-request state; safe to call more than once and after errors."""
        if self._routed_to is not None:
            if self.state is State.RESPONSE_BODY and self._response_mode == NO_BODY:
                # Envoy does not send us the response body (e.g. Envoy Gateway's
                # `processingMode.response: {}`): the stream's end is the response's end.
                self._finish_response()
            elif self.state is not State.DONE:
                self._observer.aborted(self._resolved, self.state.value)
            self._release()
        self.state = State.DONE
        self._chunks.clear()

    # -- request path -----------------------------------------------------------------------
    def _on_request_headers(self, message: pb.ProcessingRequest) -> Replies:
        if message.HasField("protocol_config"):
            config = message.protocol_config
            self._request_mode = config.request_body_mode
            self._response_mode = config.response_body_mode
        if message.HasField("metadata_context"):
            self._subset = _subset_hint(message.metadata_context)
        self._headers = {
            h.key: h.raw_value.decode("utf-8", "replace")
            for h in message.request_headers.headers.headers
        }
        if message.request_headers.end_of_stream:
            # Header-only request (e.g. GET): no body will come, decide now.
            self.state = State.RESPONSE_HEADERS
            if self._headers.get(":method") in _BODY_METHODS:
                raise BadRequest("request body is empty; expected a JSON object with 'model'")
            request = LLMRequest(
                request_id=self._request_id(), model="", target_model="",
                headers=self._headers, subset=self._subset,
            )  # fmt: skip
            destination = self._route(request, body_size=0)
            return [replies.headers_reply(self._mutation(destination, None), destination)]
        self.state = State.REQUEST_BODY
        if self._request_mode == FULL_DUPLEX:
            return []  # nothing may be sent before the whole body has arrived
        return [replies.CONTINUE_HEADERS]

    def _on_request_body(self, body: pb.HttpBody) -> Replies:
        if self.state is not State.REQUEST_BODY:
            return []
        if body.body:
            self._chunks.append(body.body)
            self._body_size += len(body.body)
            if self._body_size > self._settings.max_body_bytes:
                raise PayloadTooLarge(f"request body exceeds {self._settings.max_body_bytes} bytes")
        # Envoy sends a BUFFERED body in one message; its end_of_stream is false only when
        # trailers follow, which BUFFERED mode does not forward to us.
        if body.end_of_stream or self._request_mode != FULL_DUPLEX:
            return self._route_body(trailers_follow=False)
        return []

    def _on_request_trailers(self) -> Replies:
        out = self._route_body(trailers_follow=True) if self.state is State.REQUEST_BODY else []
        out.append(replies.CONTINUE_REQUEST_TRAILERS)
        return out

    def _route_body(self, *, trailers_follow: bool) -> Replies:
        raw = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self.state = State.RESPONSE_HEADERS
        parsed = parse_body(raw)
        resolved = self._resolver.resolve_model(parsed.model)
        if resolved is None:
            if not self._settings.model_passthrough:
                # One label value for every name no InferenceModel serves: clients must not
                # be able to add series at will (the name is in the 404 and the log).
                self._resolved = UNKNOWN_MODEL
                raise ModelNotFound(f"model {parsed.model!r} is not served by this pool")
            resolved = ResolvedModel(parsed.model, parsed.model, "Standard")
        self._resolved = resolved
        request = LLMRequest(
            request_id=self._request_id(),
            model=resolved.model_name,
            target_model=resolved.target_model,
            criticality=resolved.criticality,
            body=parsed.data,
            headers=self._headers,
            subset=self._subset,
        )
        destination = self._route(request, body_size=len(raw))
        new_body = rewrite_model(raw, parsed, resolved.target_model)
        changed = new_body is not raw
        if self._request_mode == FULL_DUPLEX:
            common = self._mutation(destination, len(new_body))
            return [
                replies.headers_reply(common, destination),
                *replies.streamed_body_replies(new_body, end_of_stream=not trailers_follow),
            ]
        common = self._mutation(destination, len(new_body) if changed else None)
        return [replies.buffered_body_reply(common, destination, new_body if changed else None)]

    def _route(self, request: LLMRequest, body_size: int) -> str:
        result = self._picker.pick(request)
        destination = ",".join(e.address for e in result.endpoints)
        self._routed_to = result.primary.address
        self._prefill_tokens = result.prefill_tokens
        self._inflight.started(self._routed_to, self._prefill_tokens)
        self._observer.routed(self._resolved, body_size)
        if log.is_enabled(logging.DEBUG):
            log.debug(
                "scheduled", request_id=request.request_id, model=request.model,
                target_model=request.target_model, endpoint=destination,
            )  # fmt: skip
        return destination

    # -- response path ----------------------------------------------------------------------
    def _on_response_headers(self, headers: pb.HttpHeaders) -> Replies:
        content_type = content_encoding = ""
        for h in headers.headers.headers:
            if h.key == "content-type":
                content_type = h.raw_value.decode("latin-1")
            elif h.key == "content-encoding":
                content_encoding = h.raw_value.decode("latin-1")
        self._usage = UsageParser(content_type, content_encoding)
        self.state = State.RESPONSE_BODY
        if headers.end_of_stream:
            self._finish_response()
        return [replies.CONTINUE_RESPONSE_HEADERS]

    def _on_response_body(self, body: pb.HttpBody) -> Replies:
        chunk = body.body
        if self._usage is None and self.state is State.RESPONSE_HEADERS:
            # Envoy skips the response headers (`response_header_mode: SKIP`): read the body
            # by its first bytes.
            self._usage = UsageParser("text/event-stream" if chunk.startswith(b"data:") else "")
            self.state = State.RESPONSE_BODY
        if chunk and self._routed_to is not None:
            self._inflight.emitted(self._routed_to, time.monotonic())
            if self._prefill_tokens:
                self._prefilled()
        if self._usage is not None and self.state is State.RESPONSE_BODY:
            self._usage.feed(chunk)
            self._observer.response_bytes(len(chunk))
        if body.end_of_stream:
            self._finish_response()
        if self._response_mode == FULL_DUPLEX:
            return [replies.streamed_passthrough_reply(chunk, body.end_of_stream)]
        return [replies.CONTINUE_RESPONSE_BODY]

    def _finish_response(self) -> None:
        if self.state is State.DONE:
            return
        usage = self._usage.finish() if self._usage is not None else None
        self._observer.finished(self._resolved, time.perf_counter() - self._started, usage)
        self._release()
        self.state = State.DONE

    # -- helpers ----------------------------------------------------------------------------
    def _mutation(self, destination: str, content_length: int | None) -> pb.CommonResponse:
        common = replies.routing_mutation(destination, content_length)
        if self._settings.clear_route_cache:
            common.clear_route_cache = True
        return common

    def _fail(self, error: PickerError) -> Replies:
        self._observer.failed(self._resolved, error)
        if log.is_enabled(logging.INFO):
            log.info("request_rejected", code=error.code, status=error.http_status,
                     reason=str(error), state=self.state.value)  # fmt: skip
        self.state = State.DONE  # counted once, as this error (`close` would add an abort)
        self.close()
        return [replies.error_reply(error)]

    def _prefilled(self) -> None:
        if self._routed_to is not None:
            self._inflight.prefilled(self._routed_to, self._prefill_tokens)
        self._prefill_tokens = 0

    def _release(self) -> None:
        if self._routed_to is not None:
            self._prefilled()
            self._inflight.finished(self._routed_to)
            self._observer.released(self._resolved)
            self._routed_to = None

    def _served_by(self, address: str | None) -> None:
        """Envoy reports the endpoint that served the request (a fallback, when the primary
        failed): the request's in-flight count, pending prefill and step timing move there."""
        old = self._routed_to
        if old is None or address is None or address == old:
            return
        self._inflight.prefilled(old, self._prefill_tokens)
        self._inflight.finished(old)
        self._routed_to = address
        self._inflight.started(address, self._prefill_tokens)

    def _request_id(self) -> str:
        return self._headers.get("x-request-id") or f"req-{next(_ids)}"


def _metadata_value(metadata: object, namespace: str, key: str) -> Any:
    """`filter_metadata[namespace][key]` of Envoy's metadata context (a protobuf Value), or
    None when either is absent."""
    filter_metadata = metadata.filter_metadata  # type: ignore[attr-defined]
    if namespace not in filter_metadata:
        return None
    fields = filter_metadata[namespace].fields
    return fields.get(key)  # (indexing would add the key)


def _subset_hint(metadata: object) -> frozenset[str] | None:
    """IPs from Envoy's subset hint; None when the proxy sent no hint."""
    hint = _metadata_value(metadata, replies.SUBSET_HINT_NAMESPACE, replies.SUBSET_HINT_KEY)
    if hint is None:
        return None
    ips = set()
    for value in hint.list_value.values:
        try:
            ip, _ = parse_address(value.string_value, default_port=0)
        except ValueError:
            continue  # an unusable entry cannot match any endpoint
        ips.add(ip)
    return frozenset(ips)


def _served_endpoint(metadata: object) -> str | None:
    """The `ip:port` in `envoy.lb` / `x-gateway-destination-endpoint-served`, if valid."""
    served = _metadata_value(
        metadata, replies.DESTINATION_METADATA_NAMESPACE, replies.SERVED_METADATA_KEY
    )
    if served is None:
        return None
    value = served.string_value
    try:
        ip, port = parse_address(value, default_port=0)
    except ValueError:
        return None
    return Endpoint("served", ip, port).address if port else None
