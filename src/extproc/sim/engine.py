"""Continuous-batching engine model: a scheduler and a step loop on a speed-scaled clock.

Each step (vLLM v1 scheduler, simplified): running requests first, oldest first, each gets its
remaining tokens (1 while decoding) within the per-step token budget; when the KV cache cannot
hold them, the newest running request is preempted (blocks freed, back to the front of the
waiting queue, recomputed later). Then, if nothing was preempted, waiting requests are admitted
in FIFO order while a sequence slot, token budget (chunked prefill) and KV blocks remain;
cached prompt blocks skip prefill; a request whose LoRA adapter is not loaded stays waiting.
The step lasts ``Profile.step_ms`` of simulated time, after which every request whose known
tokens are all computed gets one new token.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass

from extproc.logs import get_logger
from extproc.sim.kvcache import KVCache
from extproc.sim.lora import LoraSlots
from extproc.sim.metrics import EngineStats, GaugeSnapshot
from extproc.sim.profiles import Profile
from extproc.sim.request import FinishReason, SimRequest

log = get_logger(__name__)

# When the event loop falls this far (wall seconds) behind the modelled schedule, stop trying
# to catch up: later steps are timed from "now" again. Smaller delays are absorbed by timing
# each step from the previous step's deadline rather than from the wake-up time.
MAX_CATCH_UP_S = 0.05
# Upper bound (wall seconds) on an idle wait while requests are queued, as a safety net.
IDLE_RECHECK_S = 1.0


class SimClock:
    """Simulated seconds since start = wall seconds x speed."""

    __slots__ = ("speed", "start")

    def __init__(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self.start = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self.start) * self.speed

    def at(self, wall: float) -> float:
        """Simulated time of the monotonic wall time ``wall``."""
        return (wall - self.start) * self.speed


@dataclass(frozen=True, slots=True, kw_only=True)
class StepCounters:
    """Cumulative step accounting, for /admin/state and the benchmark."""

    steps: int
    generated_tokens: int
    busy_sim_seconds: float
    late_wall_seconds: float
    catch_up_resets: int


class Engine:
    """The state of one simulated vLLM engine; ``run`` is its step loop."""

    def __init__(self, profile: Profile, *, clock: SimClock, max_loras: int) -> None:
        self.profile = profile
        self.clock = clock
        self.kv = KVCache(profile.num_gpu_blocks, profile.block_size)
        self.lora = LoraSlots(max_loras, profile.lora_load_ms / 1000.0)
        self.stats = EngineStats()
        self.waiting: deque[SimRequest] = deque()
        self.running: list[SimRequest] = []
        self._wake = asyncio.Event()
        self.steps = 0
        self.busy_sim_seconds = 0.0
        self.late_wall_seconds = 0.0
        self.catch_up_resets = 0

    # -- requests ------------------------------------------------------------------------
    def add(self, req: SimRequest) -> None:
        """Queue a request (FIFO) and wake the step loop."""
        self.waiting.append(req)
        self._wake.set()

    def abort(self, req: SimRequest) -> None:
        """Give up on a request whose client went away; frees its blocks at once."""
        if req.state == "waiting":
            self.waiting.remove(req)
        elif req.state == "running":
            self.running.remove(req)
            self._release(req)
        else:
            return
        self._finish(req, "abort", self.clock.now())

    # -- state ---------------------------------------------------------------------------
    def gauges(self) -> GaugeSnapshot:
        running = sorted({r.adapter for r in self.running if r.adapter is not None})
        waiting = sorted({r.adapter for r in self.waiting if r.adapter is not None})
        return GaugeSnapshot(
            running=len(self.running),
            waiting=len(self.waiting),
            kv_usage=self.kv.usage,
            running_loras=tuple(running),
            waiting_loras=tuple(waiting),
        )

    def counters(self) -> StepCounters:
        return StepCounters(
            steps=self.steps,
            generated_tokens=self.stats.generation_tokens,
            busy_sim_seconds=self.busy_sim_seconds,
            late_wall_seconds=self.late_wall_seconds,
            catch_up_resets=self.catch_up_resets,
        )

    # -- step loop -----------------------------------------------------------------------
    async def run(self) -> None:
        """Step forever; sleeps while there is nothing to do. Cancel to stop."""
        speed = self.clock.speed
        deadline = time.monotonic()
        while True:
            if not self.running and not self.waiting:
                self._wake.clear()
                await self._wake.wait()
                deadline = time.monotonic()
                continue
            now_wall = time.monotonic()
            if now_wall - deadline > MAX_CATCH_UP_S:
                self.catch_up_resets += 1
                deadline = now_wall
            start = deadline
            now = self.clock.at(start)
            batch, prefill_tokens, decode_seqs = self.schedule(now)
            if not batch:
                await self._idle_until_runnable(now)
                deadline = time.monotonic()
                continue
            duration = self.profile.step_ms(prefill_tokens, decode_seqs) / 1000.0
            deadline = start + duration / speed
            delay = deadline - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.late_wall_seconds += max(0.0, time.monotonic() - deadline)
            self.steps += 1
            self.busy_sim_seconds += duration
            self.commit(batch, self.clock.at(deadline))

    async def _idle_until_runnable(self, now: float) -> None:
        # Only waiting requests blocked on a LoRA load (or a slot) remain: sleep until the
        # next load completes or a new request arrives.
        ready_at = self.lora.next_ready_at(now)
        timeout = IDLE_RECHECK_S
        if ready_at is not None:
            timeout = min(timeout, max(0.0, ready_at - now) / self.clock.speed)
        self._wake.clear()
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that
        # arrives as the wake-up does, and `run` is stopped by cancelling it.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    def schedule(self, now: float) -> tuple[list[tuple[SimRequest, int]], int, int]:
        """Pick this step's work: ``([(request, new tokens)], prefill tokens, decode seqs)``."""
        kv = self.kv
        budget = self.profile.max_num_batched_tokens
        batch: list[tuple[SimRequest, int]] = []
        prefill_tokens = 0
        decode_seqs = 0
        preempted = False
        running = self.running
        i = 0
        while i < len(running) and budget > 0:
            req = running[i]
            num_new = min(req.num_tokens - req.num_computed, budget)
            need = kv.blocks_for(req.num_computed + num_new) - len(req.blocks)
            while not kv.allocate(req.blocks, (), need):
                victim = running.pop()
                self._preempt(victim)
                preempted = True
                if victim is req:
                    break
            else:
                batch.append((req, num_new))
                budget -= num_new
                if num_new == 1 and req.num_computed >= req.prompt_len:
                    decode_seqs += 1
                else:
                    prefill_tokens += num_new
                i += 1
                continue
            break
        if not preempted:
            prefill_tokens += self._admit(now, budget, batch)
        return batch, prefill_tokens, decode_seqs

    def _admit(self, now: float, budget: int, batch: list[tuple[SimRequest, int]]) -> int:
        kv = self.kv
        stats = self.stats
        waiting = self.waiting
        skipped: list[SimRequest] = []
        admitted_tokens = 0
        while waiting and budget > 0 and len(self.running) < self.profile.max_num_seqs:
            req = waiting[0]
            if req.adapter is not None and not self.lora.acquire(req.adapter, now):
                skipped.append(waiting.popleft())
                continue
            # At least one token must be computed to sample the next one.
            max_hit_blocks = (req.num_tokens - 1) // kv.block_size
            hits = kv.match_prefix(req.block_hashes[:max_hit_blocks])
            cached = len(hits) * kv.block_size
            num_new = min(req.num_tokens - cached, budget)
            if not kv.allocate(req.blocks, hits, kv.blocks_for(cached + num_new) - len(hits)):
                break
            waiting.popleft()
            req.num_computed = cached
            req.num_cached_blocks = len(hits)
            req.num_prompt_cached = cached
            req.state = "running"
            stats.prefix_queries += req.prompt_len
            stats.prefix_hits += cached
            if req.first_scheduled_time is None:
                req.first_scheduled_time = now
                stats.queue_time.observe(max(0.0, now - req.arrival_time))
            if req.adapter is not None:
                self.lora.start_running(req.adapter)
            self.running.append(req)
            batch.append((req, num_new))
            budget -= num_new
            admitted_tokens += num_new
        waiting.extendleft(reversed(skipped))
        return admitted_tokens

    def commit(self, batch: list[tuple[SimRequest, int]], now: float) -> None:
        """Apply a finished step at simulated time ``now``: cache blocks, emit tokens."""
        stats = self.stats
        kv = self.kv
        block_size = kv.block_size
        any_finished = False
        for req, num_new in batch:
            if req.state != "running":  # aborted or preempted during the step
                continue
            req.num_computed += num_new
            full_blocks = min(req.num_computed, req.prompt_len) // block_size
            while req.num_cached_blocks < full_blocks:
                idx = req.num_cached_blocks
                kv.cache_block(req.blocks[idx], req.block_hashes[idx])
                req.num_cached_blocks = idx + 1
            if req.num_computed < req.num_tokens:
                continue  # a prefill chunk: no token yet
            req.num_output += 1
            stats.generation_tokens += 1
            if req.first_token_time is None:
                req.first_token_time = now
                stats.prompt_tokens += req.prompt_len
                stats.ttft.observe(max(0.0, now - req.arrival_time))
            else:
                stats.itl.observe(now - req.last_token_time)
            req.last_token_time = now
            if req.num_output >= req.max_output:
                self._release(req)
                self._finish(req, req.stop_reason, now)
                any_finished = True
            elif req.notify_tokens:
                req.wake()
        if any_finished:
            self.running = [r for r in self.running if r.state == "running"]

    # -- helpers -------------------------------------------------------------------------
    def _release(self, req: SimRequest) -> None:
        self.kv.release(req.blocks)
        req.blocks = []
        if req.adapter is not None:
            self.lora.stop_running(req.adapter)

    def _preempt(self, req: SimRequest) -> None:
        self._release(req)
        req.num_computed = 0
        req.num_cached_blocks = 0
        req.state = "waiting"
        self.waiting.appendleft(req)
        self.stats.preemptions += 1
        log.debug("preempted", request_id=req.request_id, output_tokens=req.num_output)

    def _finish(self, req: SimRequest, reason: FinishReason, now: float) -> None:
        req.state = "finished"
        req.finish_reason = reason
        req.finish_time = now
        self.stats.success[reason] += 1
        self.stats.e2e.observe(max(0.0, now - req.arrival_time))
        req.wake()
