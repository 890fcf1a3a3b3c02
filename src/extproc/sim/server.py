"""One simulated vLLM pod: an aiohttp app on its own port in front of its own engine."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from extproc.logs import get_logger
from extproc.sim import admin
from extproc.sim.config import DEFAULT_OUTPUT_MAX, DEFAULT_OUTPUT_MIN, SimConfig
from extproc.sim.engine import Engine, SimClock
from extproc.sim.faults import Faults
from extproc.sim.kvcache import prompt_block_hashes
from extproc.sim.metrics import MetricsExporter
from extproc.sim.openai_api import (
    ApiError,
    CompletionRequest,
    RequestKind,
    context_length_error,
    model_not_found,
    parse_request,
)
from extproc.sim.request import FinishReason, SimRequest
from extproc.sim.responses import DONE, StreamEncoder, full_response, models_list
from extproc.sim.tokenizer import FILLER_WORDS, filler_bytes, filler_text

log = get_logger(__name__)

POD_HEADER = "x-inference-pod"
POD_ADDRESS_HEADER = "x-inference-pod-address"
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# aiohttp treats a shutdown timeout of 0 as "no timeout": the shortest real one is used instead.
_IMMEDIATE_S = 0.001
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(error: ApiError) -> web.Response:
    return web.Response(body=error.body(), status=error.status, content_type="application/json")


class PodServer:
    """A pod: engine task + HTTP site. ``start`` binds the port; ``stop`` drains and closes."""

    def __init__(self, config: SimConfig, index: int) -> None:
        self.config = config
        self.name = f"sim-{index}"
        self.port = config.port(index)
        profile = config.profile
        # A request must fit in the KV cache on its own, or it could never be scheduled.
        self.max_model_len = min(profile.max_model_len, profile.num_gpu_blocks * profile.block_size)
        self.clock = SimClock(config.speed)
        self.engine = Engine(profile, clock=self.clock, max_loras=config.max_loras)
        self.exporter = MetricsExporter(
            model_name=config.model,
            block_size=profile.block_size,
            num_gpu_blocks=profile.num_gpu_blocks,
            max_loras=config.max_loras,
            legacy_kv_name=config.legacy_metrics,
        )
        self.faults = Faults(config.faults, seed=config.seed + index)
        self._rng = random.Random(config.seed + index)
        self._ids = itertools.count()
        self._adapters = frozenset(config.loras)
        self.created = int(time.time())
        self.address = ""
        self.crashed = False
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._engine_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Bind the port (``self.port``; 0 picks one) and start the engine loop."""
        await self._listen()
        self._engine_task = asyncio.create_task(self.engine.run(), name=f"{self.name}-engine")
        log.info("pod_listening", pod=self.name, address=self.address)

    async def _listen(self) -> None:
        app = web.Application(middlewares=[self._errors])
        app.on_response_prepare.append(self._add_pod_headers)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        admin.add_routes(app, self)
        runner = web.AppRunner(
            app,
            access_log=None,
            handler_cancellation=True,  # a client that hangs up aborts its request, as in vLLM
            # aiohttp waits this long for handlers, then again after cancelling them (a streaming
            # handler blocked on its transport does not notice): half each keeps the total at
            # --shutdown-timeout.
            shutdown_timeout=max(self.config.shutdown_timeout_s / 2, _IMMEDIATE_S),
        )
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self._site = runner, site
        host, port = runner.addresses[0][:2]
        self.port = port
        self.address = f"{host}:{port}"

    async def restart(self) -> None:
        """Listen again on the same address after a crash; the engine state carried over."""
        if not self.crashed:
            return
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.faults.released = asyncio.Event()
        await self._listen()
        self.crashed = False
        log.info("pod_restarted", pod=self.name, address=self.address)

    async def stop(self) -> None:
        """Stop listening, let in-flight requests finish within the shutdown timeout, then stop."""
        self.faults.released.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for task in (self._engine_task, *self._tasks):
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(t for t in (self._engine_task, *self._tasks) if t is not None), return_exceptions=True
        )
        self._engine_task = None

    async def crash(self) -> None:
        """Stop listening and drop every open connection at once; the engine state is kept."""
        if self.crashed or self._runner is None:
            return
        self.crashed = True
        self.faults.released.set()
        if self._site is not None:
            await self._site.stop()
            self._site = None
        server = self._runner.server
        if server is not None:
            server.pre_shutdown()
            await server.shutdown(_IMMEDIATE_S)
        log.info("pod_crashed", pod=self.name, address=self.address)

    def crash_soon(self) -> None:
        """Crash after the current response has been written."""

        async def later() -> None:
            await asyncio.sleep(0.05)
            await self.crash()

        task = asyncio.create_task(later())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- plumbing ------------------------------------------------------------------------
    async def _add_pod_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers[POD_HEADER] = self.name
        response.headers[POD_ADDRESS_HEADER] = self.address

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return error_response(exc)
        except web.HTTPException:
            raise
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as exc:
            log.error("handler_failed", pod=self.name, path=request.path, exc_info=exc)
            return error_response(ApiError("Internal server error."))

    def resolve_adapter(self, model: str) -> str | None:
        """None for the base model, the adapter name for a LoRA; NotFound otherwise."""
        if model == self.config.model:
            return None
        if model in self._adapters:
            return model
        raise model_not_found(model)

    # -- endpoints -----------------------------------------------------------------------
    async def _health(self, request: web.Request) -> web.Response:
        return web.Response()

    async def _metrics(self, request: web.Request) -> web.Response:
        body = self.exporter.render(self.engine.gauges(), self.engine.stats)
        response = web.Response(body=body)
        response.headers["Content-Type"] = METRICS_CONTENT_TYPE
        return response

    async def _models(self, request: web.Request) -> web.Response:
        body = models_list(
            self.config.model,
            self.config.loras,
            created=self.created,
            max_model_len=self.max_model_len,
        )
        return web.Response(body=body, content_type="application/json")

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, "chat")

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, "completion")

    def _admit(self, parsed: CompletionRequest) -> SimRequest:
        adapter = self.resolve_adapter(parsed.model)
        prompt_len = len(parsed.prompt_tokens)
        reason: FinishReason
        if parsed.max_tokens is not None:
            max_output, reason = parsed.max_tokens, "length"
            if prompt_len + max_output > self.max_model_len:
                raise context_length_error(self.max_model_len, prompt_len, max_output)
        else:
            if prompt_len >= self.max_model_len:
                raise context_length_error(self.max_model_len, prompt_len, 0)
            drawn = self._rng.randint(DEFAULT_OUTPUT_MIN, DEFAULT_OUTPUT_MAX)
            max_output, reason = min(drawn, self.max_model_len - prompt_len), "stop"
        profile = self.config.profile
        return SimRequest(
            request_id=f"{self.name}-{next(self._ids)}",
            adapter=adapter,
            prompt_len=prompt_len,
            block_hashes=prompt_block_hashes(
                adapter or self.config.model, parsed.prompt_tokens, profile.block_size
            ),
            max_output=max_output,
            stop_reason=reason,
            arrival_time=self.clock.now(),
            word_start=self._rng.randrange(len(FILLER_WORDS)),
        )

    async def _complete(self, request: web.Request, kind: RequestKind) -> web.StreamResponse:
        await self.faults.apply()
        parsed = parse_request(kind, await request.read())
        req = self._admit(parsed)
        req.notify_tokens = parsed.stream
        self.engine.add(req)
        try:
            if parsed.stream:
                return await self._stream(request, parsed, req)
            while not req.finished:
                await req.wait_progress()
            return web.Response(
                body=full_response(
                    kind=kind,
                    request_id=req.request_id,
                    created=int(time.time()),
                    model=parsed.model,
                    text=filler_text(req.word_start, req.num_output),
                    finish_reason=req.finish_reason or "stop",
                    prompt_tokens=req.prompt_len,
                    completion_tokens=req.num_output,
                ),
                content_type="application/json",
            )
        finally:
            if not req.finished:
                self.engine.abort(req)

    async def _stream(
        self, request: web.Request, parsed: CompletionRequest, req: SimRequest
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers=_SSE_HEADERS)
        await response.prepare(request)
        encoder = StreamEncoder(
            kind=parsed.kind,
            request_id=req.request_id,
            created=int(time.time()),
            model=parsed.model,
        )
        start = req.word_start
        sent = 0
        while True:
            produced = req.num_output
            if produced > sent or req.finished:
                # Several tokens may be ready if this handler lagged: one write for all of them.
                head = encoder.role_chunk() if sent == 0 else b""
                words = [filler_bytes(start, i) for i in range(sent, produced)]
                await response.write(head + encoder.tokens(words, req.finish_reason))
                sent = produced
                if req.finished:
                    break
            await req.wait_progress()
        tail = DONE
        if parsed.include_usage:
            tail = encoder.usage_chunk(req.prompt_len, req.num_output) + DONE
        await response.write(tail)
        await response.write_eof()
        return response
