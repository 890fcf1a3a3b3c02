"""Built-in hardware/model profiles: the constants of the simulated engine's latency model."""

from __future__ import annotations

from dataclasses import dataclass

BLOCK_SIZE = 16  # tokens per KV-cache block, vLLM's default on CUDA


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """Constants of one simulated GPU + model pairing.

    One engine step takes ``step_base_ms + prefill_tokens * prefill_token_us / 1000
    + decode_seqs * decode_seq_us / 1000`` milliseconds of simulated time.
    """

    name: str
    # Fixed cost of one forward pass: reading the weights once (memory-bandwidth bound).
    step_base_ms: float
    # Cost of each prompt token computed in the step (compute bound).
    prefill_token_us: float
    # Cost of each decoding sequence in the step (attention over its KV cache).
    decode_seq_us: float
    # KV-cache capacity in blocks of BLOCK_SIZE tokens.
    num_gpu_blocks: int
    # Scheduler limits, with vLLM's flag names.
    max_num_seqs: int
    max_num_batched_tokens: int
    max_model_len: int
    # Time to bring a LoRA adapter into a GPU slot.
    lora_load_ms: float
    block_size: int = BLOCK_SIZE

    def step_ms(self, prefill_tokens: int, decode_seqs: int) -> float:
        """Simulated duration of one engine step, in milliseconds."""
        return (
            self.step_base_ms
            + prefill_tokens * self.prefill_token_us / 1000.0
            + decode_seqs * self.decode_seq_us / 1000.0
        )


# NVIDIA A10 (24 GB, ~600 GB/s) serving a 7B fp16 model (~13.5 GB of weights): a decode step
# is bound by reading the weights (~22 ms); ~8 GB of KV cache at 512 KiB/token is ~1,000 blocks.
# A 100-token completion on an idle pod takes about 100 * 22.3 ms = 2.2 s.
A10_7B = Profile(
    name="a10-7b",
    step_base_ms=22.0,
    prefill_token_us=150.0,
    decode_seq_us=250.0,
    num_gpu_blocks=1000,
    max_num_seqs=256,
    max_num_batched_tokens=2048,
    max_model_len=4096,
    lora_load_ms=60.0,
)

# NVIDIA H100 SXM (80 GB, ~3.3 TB/s) serving the same model: ~6 ms per decode step and
# ~58 GB of KV cache (~7,000 blocks). A 100-token completion takes about 0.6 s.
H100_7B = Profile(
    name="h100-7b",
    step_base_ms=6.0,
    prefill_token_us=25.0,
    decode_seq_us=40.0,
    num_gpu_blocks=7000,
    max_num_seqs=256,
    max_num_batched_tokens=8192,
    max_model_len=4096,
    lora_load_ms=25.0,
)

DEFAULT_PROFILE = A10_7B.name
PROFILES: dict[str, Profile] = {p.name: p for p in (A10_7B, H100_7B)}


def get_profile(name: str) -> Profile:
    """Return the built-in profile called ``name``; raise KeyError listing the known names."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise KeyError(f"unknown profile {name!r} (known: {known})") from None
