"""Per-pod admin API for tests and demos: engine state, runtime faults and crashing the pod.

- ``GET /admin/state``: engine state and step accounting as JSON.
- ``GET /admin/faults``: current fault settings.
- ``POST /admin/faults``: partial update, e.g. ``{"error_rate": 0.5, "stall": false}``.
- ``POST /admin/crash``: answer, then stop listening and drop every connection of this pod
  (``PodServer.restart()`` / ``SimCluster.restart(name)`` bring it back, from Python).
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING

from aiohttp import web

from extproc.logs import get_logger
from extproc.sim.openai_api import BadRequest

if TYPE_CHECKING:
    from extproc.sim.server import PodServer

log = get_logger(__name__)


def state(pod: PodServer) -> dict[str, object]:
    """A JSON-able picture of the pod's engine; times in simulated seconds unless named wall."""
    engine = pod.engine
    stats = engine.stats
    now = pod.clock.now()
    counters = engine.counters()
    return {
        "pod": pod.name,
        "address": pod.address,
        "model": pod.config.model,
        "loras": list(pod.config.loras),
        "profile": pod.config.profile.name,
        "speed": pod.clock.speed,
        "sim_time": now,
        "running": len(engine.running),
        "waiting": len(engine.waiting),
        "kv_usage": engine.kv.usage,
        "kv_free_blocks": engine.kv.num_free,
        "kv_cached_blocks": engine.kv.num_cached,
        "num_gpu_blocks": engine.kv.num_blocks,
        "max_model_len": pod.max_model_len,
        "lora_loaded": engine.lora.loaded(now),
        "lora_loading": engine.lora.loading(now),
        "lora_loads": engine.lora.loads,
        "running_requests": [r.request_id for r in engine.running],
        "waiting_requests": [r.request_id for r in engine.waiting],
        **dataclasses.asdict(counters),
        "prompt_tokens": stats.prompt_tokens,
        "prefix_cache_queries": stats.prefix_queries,
        "prefix_cache_hits": stats.prefix_hits,
        "preemptions": stats.preemptions,
        "requests_finished": dict(stats.success),
        "faults": dataclasses.asdict(pod.faults.config),
        "injected_errors": pod.faults.injected_errors,
    }


def _json(data: object) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), content_type="application/json")


def add_routes(app: web.Application, pod: PodServer) -> None:
    """Register the admin endpoints of ``pod`` on ``app``."""

    async def get_state(request: web.Request) -> web.Response:
        return _json(state(pod))

    async def get_faults(request: web.Request) -> web.Response:
        return _json(dataclasses.asdict(pod.faults.config))

    async def set_faults(request: web.Request) -> web.Response:
        try:
            changes = json.loads(await request.read())
        except ValueError as exc:
            raise BadRequest(f"Request body is not valid JSON: {exc}") from exc
        if not isinstance(changes, dict):
            raise BadRequest("Fault settings must be a JSON object.")
        try:
            pod.faults.config = pod.faults.config.updated(changes)
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        log.info("faults_updated", pod=pod.name, **dataclasses.asdict(pod.faults.config))
        return _json(dataclasses.asdict(pod.faults.config))

    async def crash(request: web.Request) -> web.Response:
        pod.crash_soon()
        return _json({"pod": pod.name, "status": "crashing"})

    app.router.add_get("/admin/state", get_state)
    app.router.add_get("/admin/faults", get_faults)
    app.router.add_post("/admin/faults", set_faults)
    app.router.add_post("/admin/crash", crash)
