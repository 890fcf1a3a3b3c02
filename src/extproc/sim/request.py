"""One request's state inside a simulated engine, and how its HTTP handler waits on it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal

RequestState = Literal["waiting", "running", "finished"]
FinishReason = Literal["stop", "length", "abort"]


class SimRequest:
    """Token accounting of one request; the engine mutates it, the handler reads it.

    ``num_tokens`` (prompt + generated) minus ``num_computed`` is the work left before the
    next token can be sampled: 1 while decoding, more while (re)computing a prompt.
    Times are simulated seconds.
    """

    __slots__ = (
        "adapter",
        "arrival_time",
        "block_hashes",
        "blocks",
        "finish_reason",
        "finish_time",
        "first_scheduled_time",
        "first_token_time",
        "last_token_time",
        "max_output",
        "notify_tokens",
        "num_cached_blocks",
        "num_computed",
        "num_output",
        "num_prompt_cached",
        "prompt_len",
        "request_id",
        "state",
        "stop_reason",
        "waiter",
        "word_start",
    )

    def __init__(
        self,
        *,
        request_id: str,
        adapter: str | None,
        prompt_len: int,
        block_hashes: Sequence[int],
        max_output: int,
        stop_reason: FinishReason,
        arrival_time: float,
        word_start: int = 0,
    ) -> None:
        self.request_id = request_id
        self.adapter = adapter
        self.prompt_len = prompt_len
        self.block_hashes = block_hashes
        self.max_output = max_output
        # Reason reported when max_output is reached: "length" when the client set a limit,
        # "stop" when the simulator chose the length (the model "emitted EOS").
        self.stop_reason: FinishReason = stop_reason
        self.arrival_time = arrival_time
        self.word_start = word_start
        self.state: RequestState = "waiting"
        self.num_computed = 0
        self.num_output = 0
        self.num_cached_blocks = 0  # prompt blocks already indexed in the prefix cache
        self.num_prompt_cached = 0  # prompt tokens served from the prefix cache, last schedule
        self.blocks: list[int] = []
        self.first_scheduled_time: float | None = None
        self.first_token_time: float | None = None
        self.last_token_time = 0.0
        self.finish_time: float | None = None
        self.finish_reason: FinishReason | None = None
        self.waiter: asyncio.Future[None] | None = None
        # Streaming handlers want a wake-up per token; others only at the end.
        self.notify_tokens = True

    @property
    def num_tokens(self) -> int:
        return self.prompt_len + self.num_output

    @property
    def finished(self) -> bool:
        return self.state == "finished"

    def wake(self) -> None:
        """Resolve the handler's pending wait, if any (called by the engine after a step)."""
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def wait_progress(self) -> None:
        """Wait until the engine produced a token for, or finished, this request."""
        waiter = asyncio.get_running_loop().create_future()
        self.waiter = waiter
        await waiter
